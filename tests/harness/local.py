"""The local actor: a process on the server itself that uses the export directly (as root or as a
given uid), and can hold a kernel lease or delegation and report its break.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

HOLDER = Path(__file__).with_name("lease_holder.py")


class KernelLeaseHolder:
    """A child process holding F_SETLEASE (kind="lease") or F_SETDELEG (kind="deleg") on `path`.
    The lease stays held until release(): a break is reported (wait_broken) but not acted on, so
    a test can check that the breaker waits for the holder."""

    def __init__(self, path: Path, kind: str = "lease", mode: str = "read",
                 uid: int | None = None, gid: int | None = None, timeout: float = 10.0):
        self.path = Path(path)
        self.events: queue.Queue = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, str(HOLDER), str(path), kind, mode], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, user=uid, group=gid)
        threading.Thread(target=self._read_events, daemon=True).start()
        first = self._next(timeout)
        if first.get("event") != "held":
            self.close()
            raise OSError(first.get("errno", 0), f"{kind} {mode} on {path}: {first}")
        self.broken_after: float | None = None

    def _read_events(self) -> None:
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put({"event": "exited", "stderr": self.proc.stderr.read()})

    def _next(self, timeout: float) -> dict:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"lease holder on {self.path} said nothing within {timeout}s") from None

    def wait_broken(self, timeout: float = 30.0) -> float:
        """Blocks until the kernel breaks the lease (SIGIO); returns seconds since it was held."""
        if self.broken_after is None:
            event = self._next(timeout)
            if event.get("event") != "broken":
                raise AssertionError(f"expected a lease break on {self.path}, got {event}")
            self.broken_after = event["after"]
        return self.broken_after

    def is_broken(self) -> bool:
        """Non-blocking: has a break been reported?"""
        if self.broken_after is None:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return False
            if event.get("event") != "broken":
                raise AssertionError(f"unexpected event from lease holder: {event}")
            self.broken_after = event["after"]
        return True

    def release(self, timeout: float = 10.0) -> None:
        """F_UNLCK: lets the breaker proceed."""
        if self.proc.poll() is None:
            self.proc.stdin.write("release\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


class LocalActor:
    """File operations on the export as the server's own processes do them. With `uid`, every
    operation runs in a child process with that uid/gid (a lease holder too)."""

    def __init__(self, root: Path, uid: int | None = None, gid: int | None = None):
        self.root = Path(root)
        self.uid = uid
        self.gid = gid if gid is not None else uid
        self._holders: list[KernelLeaseHolder] = []

    def path(self, name: str) -> Path:
        return self.root / name

    def as_user(self, uid: int, gid: int | None = None) -> "LocalActor":
        actor = LocalActor(self.root, uid, gid)
        actor._holders = self._holders      # torn down with this actor
        return actor

    def _child(self, code: str, *args: str, data: bytes = b"") -> bytes:
        out = subprocess.run([sys.executable, "-c", code, *args], input=data, capture_output=True,
                             user=self.uid, group=self.gid, timeout=120)
        if out.returncode != 0:
            raise OSError(f"local op as uid {self.uid} failed: {out.stderr.decode(errors='replace')}")
        return out.stdout

    def read(self, name: str) -> bytes:
        if self.uid is None:
            return self.path(name).read_bytes()
        return self._child("import sys; sys.stdout.buffer.write(open(sys.argv[1],'rb').read())",
                           str(self.path(name)))

    def read_many(self, names: list[str]) -> list[bytes]:
        """Reads every file, starting all their lease breaks at once: a non-blocking open of
        each first (EWOULDBLOCK starts the break of a leased file), then a blocking read."""
        if self.uid is not None:
            raise NotImplementedError("read_many runs as the test process")
        for name in names:
            try:
                os.close(os.open(self.path(name), os.O_RDONLY | os.O_NONBLOCK))
            except BlockingIOError:
                pass
        return [self.path(name).read_bytes() for name in names]

    def write(self, name: str, data: bytes, mode: int | None = None) -> None:
        """Writes `name`; with `mode`, then sets its permission bits (0o666: a file the SMB
        test user may read and write whoever made it)."""
        if self.uid is None:
            self.path(name).write_bytes(data)
            if mode is not None:
                os.chmod(self.path(name), mode)
        else:
            self._child("import os, sys; open(sys.argv[1],'wb').write(sys.stdin.buffer.read())"
                        "; m = int(sys.argv[2]); m >= 0 and os.chmod(sys.argv[1], m)",
                        str(self.path(name)), str(-1 if mode is None else mode), data=data)

    def mkdir(self, name: str) -> None:
        if self.uid is None:
            self.path(name).mkdir()
        else:
            self._child("import os, sys; os.mkdir(sys.argv[1])", str(self.path(name)))

    def listdir(self, name: str = ".") -> list[str]:
        return sorted(os.listdir(self.path(name)))

    def hold_lease(self, name: str, mode: str = "read", kind: str = "lease") -> KernelLeaseHolder:
        """A kernel lease (kind="lease", F_SETLEASE) or delegation (kind="deleg", F_SETDELEG,
        Linux >= 6.19) of `mode` "read"/"write" on the file or directory `name`; released at
        teardown if the test did not."""
        holder = KernelLeaseHolder(self.path(name), kind, mode, self.uid, self.gid)
        self._holders.append(holder)
        return holder

    def close(self) -> None:
        for holder in self._holders:
            holder.close()
