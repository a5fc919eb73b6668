"""A child process that dies with the process that started it (Linux), so that no orphan trains on
and writes state that a resumed sweep would then run a second time. No torch: it runs first thing."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_ENV = "INTENTBENCH_PARENT_PID"


def die_with_parent() -> None:
    """The kernel SIGKILLs this process when its parent (the thread that started it) ends, even of
    SIGKILL. The parent names itself in $INTENTBENCH_PARENT_PID; without it nothing is set."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(1)
