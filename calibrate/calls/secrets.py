"""API keys: reading one from the environment, and scrubbing every form of it from text we keep.

Reading (`read_api_key`): surrounding whitespace is stripped — a trailing newline is what `.env`
files, `$(cat key.txt)` and Kubernetes secrets usually add — and a key that still holds anything
but printable ASCII (a control character, a space, a non-ASCII letter) is refused with a
`ConfigError` naming the variable, never the value: such a key cannot go into an HTTP header, and
httpx's complaint about it would quote the whole header.

Scrubbing (`scrub`): a server may echo the key back raw, URL-encoded, JSON- or Python-escaped,
HTML-escaped, or cut short (by itself, or by anyone who clips its message). Every occurrence of a
form's first `MIN_PREFIX` characters, extended as far as the text keeps matching that form, becomes
`***` (case-insensitively: over-redacting is harmless). Scrub before clipping a text to a length,
so that a clip never leaves a key's prefix behind. Pure: no I/O.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from urllib.parse import quote, quote_plus

from calibrate.errors import ConfigError

MIN_PREFIX = 8
"""A key's prefix this long (or the whole key, when shorter) is scrubbed wherever it appears."""
MASK = "***"


def read_api_key(environ: Mapping[str, str], variable: str, tier: str) -> str:
    """The key in `environ[variable]`, stripped of surrounding whitespace; ConfigError when it is
    unset, empty, or holds a character an HTTP header cannot carry."""
    value = (environ.get(variable) or "").strip()
    if not value:
        raise ConfigError(
            f"tier {tier!r}: the environment variable {variable} is not set",
            hint=f"Export {variable} with the API key (it is read from the environment only "
            "and never stored), or remove api_key_env for a keyless server.",
        )
    for position, char in enumerate(value):
        if not 0x21 <= ord(char) <= 0x7E:
            raise ConfigError(
                f"tier {tier!r}: the environment variable {variable} holds {_describe(char)} "
                f"at position {position + 1} of {len(value)}, which an HTTP header cannot carry",
                hint=f"API keys are printable ASCII without spaces; check how {variable} is set "
                "(a pasted line break, quotes, a second value). The key itself is never shown.",
            )
    return value


def _describe(char: str) -> str:
    if char.isspace() and char not in "\n\r\t":
        return "a space"
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"a control character (U+{ord(char):04X})"
    return "a non-ASCII character"


def forms(secret: str) -> tuple[str, ...]:
    """The ways a server's reply may spell the key, longest first."""
    spelled = {
        secret,
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "backslashreplace"))[2:-1],
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        html.escape(secret),
    }
    return tuple(sorted(spelled, key=lambda f: (-len(f), f)))


def scrub(text: str, secret: str | None) -> str:
    """`text` with every form of `secret`, and every prefix of one at least MIN_PREFIX long,
    replaced by ***. Where forms overlap (a URL-encoded key shares the raw key's start), the
    union of their matches goes."""
    if not secret or not text:
        return text
    spans = sorted(span for form in forms(secret) for span in _matches(text, form))
    if not spans:
        return text
    pieces, done = [], 0
    for begin, end in spans:
        if begin > done:
            pieces += [text[done:begin], MASK]
        elif not pieces:
            pieces.append(MASK)
        done = max(done, end)
    return "".join(pieces) + text[done:]


def _matches(text: str, form: str) -> list[tuple[int, int]]:
    """(start, end) of each occurrence of the form's head, extended while the text follows it."""
    head = form[:MIN_PREFIX]
    spans = []
    for found in re.finditer(re.escape(head), text, re.IGNORECASE):
        end, k = found.end(), len(head)
        while k < len(form) and end < len(text) and text[end].lower() == form[k].lower():
            end, k = end + 1, k + 1
        spans.append((found.start(), end))
    return spans
