"""`calibrate schema`: print the canonical log format."""

from __future__ import annotations


def schema_cmd() -> None:
    """Print the canonical log format (version 1): fields, file variants, merge rule, reject reasons.

    Example:

    \b
        calibrate schema
    """
    from calibrate.formats import canonical as logformat

    print(logformat.SCHEMA_DOC)
