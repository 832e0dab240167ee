"""Ctrl-C and SIGTERM for long-running commands: the first one asks the stage to stop cleanly.

`stop_on_signals()` installs handlers for the duration of a `with` block and yields a
`threading.Event` the stage polls (`interrupted=event.is_set`): calls in flight finish and are
stored, no new call starts. A second signal raises KeyboardInterrupt to stop at once; what was
committed stays committed. The previous handlers are restored on exit.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """Yield an event set by the first SIGINT/SIGTERM; the second raises KeyboardInterrupt."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield stop
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
