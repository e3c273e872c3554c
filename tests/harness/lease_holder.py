"""A local process that holds a kernel lease (F_SETLEASE) or delegation (F_SETDELEG) on a file or
directory and reports its break. Run by harness.local.KernelLeaseHolder, one JSON object a line:

    stdout: {"event": "held", "kind": ...} | {"event": "error", "errno": N, "message": ...}
            {"event": "broken", "after": seconds since held}   (SIGIO: the kernel breaks it)
            {"event": "released"}
    stdin:  "release" (or end of file) -> F_UNLCK, then exit.

Standard library only; it may run as another uid.
"""
import fcntl
import json
import os
import signal
import struct
import sys
import threading
import time

F_SETLEASE, F_GETLEASE = 1024, 1025
F_GETDELEG, F_SETDELEG = 1024 + 15, 1024 + 16      # Linux >= 6.19
LOCKS = {"read": fcntl.F_RDLCK, "write": fcntl.F_WRLCK}


def say(**event) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def set_lock(fd: int, kind: str, lock: int) -> None:
    if kind == "lease":
        fcntl.fcntl(fd, F_SETLEASE, lock)
    else:  # struct delegation { __u32 d_flags; __u16 d_type; __u16 __pad; }
        fcntl.fcntl(fd, F_SETDELEG, struct.pack("IHH", 0, lock, 0))


def main() -> int:
    path, kind, mode = sys.argv[1], sys.argv[2], sys.argv[3]   # kind: lease|deleg, mode: read|write
    broken = threading.Event()
    signal.signal(signal.SIGIO, lambda signum, frame: broken.set())
    is_dir = os.path.isdir(path)
    # A write lease on an O_RDONLY fd is allowed (and can be downgraded); directories: O_DIRECTORY.
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if is_dir else 0))
    try:
        set_lock(fd, kind, LOCKS[mode])
    except OSError as e:
        say(event="error", errno=e.errno, message=str(e))
        return 2
    held_at = time.monotonic()
    say(event="held", kind=kind, mode=mode, pid=os.getpid(), uid=os.getuid())

    def report_break() -> None:
        broken.wait()
        say(event="broken", after=round(time.monotonic() - held_at, 3))

    threading.Thread(target=report_break, daemon=True).start()
    sys.stdin.readline()          # "release" or EOF (the test ended)
    set_lock(fd, kind, fcntl.F_UNLCK)
    say(event="released")
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
