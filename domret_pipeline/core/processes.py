"""Who owns a run or a staging folder, and whether that process is still alive.

An owner is (host, pid, process start time). The start time guards against pid reuse: a
killed run's pid may belong to an unrelated process by the time anyone looks.
"""

from __future__ import annotations

import os
import socket


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux /proc), or "" where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            # the command name (field 2) may hold spaces and parentheses: split after its last ')'
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def identity(pid: int | None = None) -> dict[str, str]:
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": str(pid), "started": _start_time(pid)}


def is_alive(owner: dict) -> bool | None:
    """True or False for a process of this host; None for another host's (not ours to judge)."""
    if owner.get("host") != socket.gethostname():
        return None
    try:
        pid = int(owner["pid"])
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    except (KeyError, ValueError):
        return None
    started = owner.get("started")
    return not started or _start_time(pid) == started
