"""The DuckDB store: every SQL statement of calibrate lives in this package.

`Store.open(path)` opens (creating if needed) a store file, or `:memory:`, and applies migrations.
"""

from calibrate.store.core import Store
from calibrate.store.journal import Journal

__all__ = ["Journal", "Store"]
