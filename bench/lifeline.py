"""Process life: a child that dies with the process that started it (Linux), so that no orphan trains
on and writes state that a resumed sweep would then run a second time; and a fast exit. No torch."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

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


def keep_niceness() -> None:
    """Gives this process's scheduler group the niceness the process inherited. A worker starts in a
    session of its own, and where the kernel groups processes by session (Linux autogroups, on by
    default on desktops and many servers) CPU is shared between groups, each at its group's niceness
    (0): `nice python -m bench run` would throttle no worker. Where there are no autogroups nothing
    changes; a niceness below the group's needs privileges and is left alone."""
    for _ in range(20):  # unprivileged, the kernel takes one such change per 0.1 s machine-wide (EAGAIN)
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(os.getpriority(os.PRIO_PROCESS, 0)))
            return
        except BlockingIOError:
            time.sleep(0.11)
        except OSError:
            return


def exit_now(code: int) -> None:
    """Exits without tearing down the interpreter: freeing torch's modules and a GB-sized heap takes
    ~0.8 s on a small CPU, and everything that must outlive the process (the record, fsynced) is
    written already."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
