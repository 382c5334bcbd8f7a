"""Whether a process is still running, without touching it: the run lock's test of its holder.

POSIX asks with signal 0 (`os.kill(pid, 0)` checks that the process exists and sends nothing).
Windows has no signal 0: there `os.kill` calls TerminateProcess for any signal number but
CTRL_C_EVENT and CTRL_BREAK_EVENT, so the "test" would end the holder. Windows is asked through
the Win32 API instead: OpenProcess, then GetExitCodeProcess (STILL_ACTIVE while it runs).
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Win32 constants (winnt.h, winerror.h, minwinbase.h).
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
STILL_ACTIVE = 259
ERROR_ACCESS_DENIED = 5


def process_alive(pid: int, platform: str = sys.platform, kernel32: Any = None) -> bool:
    """Whether process `pid` runs on this machine, without sending it anything. `platform` and
    `kernel32` (the Win32 API, ctypes' windll.kernel32 by default) select and serve the Windows
    branch."""
    if pid <= 0:
        return False
    if platform == "win32":
        return _alive_windows(pid, kernel32)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _alive_windows(pid: int, kernel32: Any = None) -> bool:
    if kernel32 is None:
        import ctypes

        # use_last_error: ctypes saves the error right after each call, before Python's own
        # calls can overwrite it; kernel32.GetLastError() called afterwards may read another's.
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        last_error = ctypes.get_last_error  # type: ignore[attr-defined]
    else:  # a stand-in (tests): it keeps its own last error
        last_error = kernel32.GetLastError
    handle = kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        # No such process (ERROR_INVALID_PARAMETER), or one this user may not query: that one exists.
        return last_error() == ERROR_ACCESS_DENIED
    try:
        import ctypes

        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True  # the process is there; its state could not be read
        # A process that ended keeps its handle while others hold one; its exit code tells.
        # (One that exited with code 259 itself reads as running: Windows cannot tell them apart.)
        return code.value == STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
