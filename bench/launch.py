"""Run a command and write its wall seconds, CPU seconds and peak RSS to a file: what the benches'
`child` functions measure a fresh process with.

Why a launcher: on Linux a process's peak RSS (`ru_maxrss`) survives `execve`, so a child forked
from a large parent (the bench, after it built a store) reports the parent's size as its own
peak. This small process forks the command instead, so its `wait4` sees the command's own peak.

Usage: python bench/launch.py RESULT.json COMMAND [ARG ...]; exits with the command's code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> int:
    result, argv = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    with open(result, "w", encoding="utf-8") as fh:
        json.dump(
            {
                "wall_s": wall,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
            },
            fh,
        )
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
