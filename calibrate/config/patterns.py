"""User regular expressions: one syntax, RE2, matched in time linear in the text, whatever the pattern.

Every pattern a user supplies goes through here: the keyword rules of rules.yaml and routing.yaml
(the sweep, `evaluate`, `monitor`, `sample --routing`, `serve-gate`), `sample --keyword`
(case-insensitive) and the reference of the `regex` scorer. Prompts are end-user input and
routing.yaml arrives through pull requests, so a backtracking engine (Python's `re`: `(a+)+$` on
forty `a`s and a `!` runs for minutes) is never used on them.

RE2 syntax (https://github.com/google/re2/wiki/Syntax) is Python's without backreferences and
look-around; `\\b`, `\\w`, `\\d` and `\\s` are ASCII (`(?i)` folds Unicode case). A pattern RE2 cannot
compile, or whose program exceeds RE2's memory budget, is a `PatternError` naming why.
"""

from __future__ import annotations

from typing import Any

import re2

MAX_KEYWORD_RULES = 1000
"""The most keyword rules a rules file or routing.yaml may hold: each prompt is searched with every
rule until one matches, so the sweep's time grows with their number."""
SYNTAX_HINT = (
    "Patterns use RE2 syntax (https://github.com/google/re2/wiki/Syntax): Python's without"
    " look-around or backreferences; escape backslashes in YAML double quotes."
)


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message says why."""


def compile_pattern(pattern: str, *, ignore_case: bool = False) -> Any:
    """The compiled pattern (`search`/`fullmatch` on str or UTF-8 bytes; no capture groups)."""
    options = re2.Options()
    options.log_errors = False  # RE2 would print to stderr; the error is raised instead
    options.never_capture = True  # only whether it matches is ever asked
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise PatternError(text) from None


def first_matches(patterns: list[str], texts: list[str], *, ignore_case: bool = False) -> list[int]:
    """Per text, the index of the first pattern it matches (-1: none). Each distinct text is
    encoded and matched once (templated prompts repeat)."""
    searches = [compile_pattern(p, ignore_case=ignore_case).search for p in patterns]
    found: dict[str, int] = {}
    out = []
    for text in texts:
        k = found.get(text)
        if k is None:
            data = text.encode("utf-8", "surrogatepass")
            k = found[text] = next((k for k, search in enumerate(searches) if search(data)), -1)
        out.append(k)
    return out
