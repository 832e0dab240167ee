"""calibrate: calibrate LLM routing offline from your own production logs.

Importing this package has no side effects; the command line lives in `calibrate.cli.app`.
"""

__version__ = "0.1.0"
