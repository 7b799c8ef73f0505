"""Run a command for as long as our stdin stays open, then stop it.

Usage: python supervise.py PROGRAM [ARGS...]

The interop tests start every Python process through this wrapper with a pipe as stdin.
When the test drops its end of the pipe, or the test process dies in any way (a timeout
that kills it included), the pipe closes and the command gets SIGTERM, then SIGKILL after
3 s. So no gateway or worker outlives the test that started it.

Exits with the command's exit code (128 + signal number when a signal ended it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def stop_when_stdin_closes() -> None:
        try:  # the raw fd: a buffered reader's lock would block the interpreter's exit
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=3)
            except subprocess.TimeoutExpired:
                child.kill()

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
