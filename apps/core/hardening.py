"""Process settings for every process that holds patient data or keys in memory: web workers,
Celery workers, the DICOM gateway and the STOW-RS parse helpers.

- **No core dumps.** A crash would otherwise write the process's memory (decrypted images, patient
  fields, hospital keys) to disk in the clear, where systemd-coredump or apport keep it for days.
  ``RLIMIT_CORE`` 0, and ``PR_SET_DUMPABLE`` 0, which also keeps other processes of the same user
  from attaching with ptrace (a debugger or profiler run as root still can).
- **No new privileges** (``PR_SET_NO_NEW_PRIVS``): nothing this process or its children execute
  gains privileges through setuid or setgid bits or file capabilities.

Linux only for the two ``prctl`` settings; elsewhere the core limit alone is set.
"""

import ctypes
import resource
import sys

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38


def harden_process() -> None:
    """Apply the settings above to this process (and so to the children it starts); idempotent."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for option, value in ((PR_SET_DUMPABLE, 0), (PR_SET_NO_NEW_PRIVS, 1)):
        if libc.prctl(option, value, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl({option}, {value}) failed")
