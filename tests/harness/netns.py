"""Network namespaces the tests create, so that each smbd (and later Ganesha) gets the standard
ports (445, 2049) on its own 127.0.0.1 without colliding with scripts/serve.sh, a system Samba
or another test. Some Samba tools (smbcacls) cannot connect to any port but 445/139, so a
private port space is the only way to test them against a private smbd.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import subprocess

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count()


class NetNamespace:
    """`ip netns add` with loopback up; `close()` deletes it (and so every socket in it)."""

    def __init__(self, prefix: str = "nfsb"):
        remove_stale(prefix)
        self.name = f"{prefix}-{os.getpid()}-{next(_counter)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)

    def wrap(self, argv: list[str]) -> list[str]:
        """The command line that runs `argv` inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    @contextlib.contextmanager
    def entered(self):
        """Moves the calling thread into the namespace for the `with` body. Sockets created
        there stay in the namespace afterwards, so an in-process client connects inside."""
        own = os.open(f"/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield self
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)

    def add_address(self, cidr: str, device: str = "lo") -> None:
        """A further address (e.g. "127.0.0.2/8" on lo), so that a server inside can listen on
        two addresses and the tests can tell its clients apart by the address they reached."""
        subprocess.run(["ip", "-n", self.name, "addr", "add", cidr, "dev", device], check=True)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)


def remove_stale(prefix: str) -> None:
    """Deletes namespaces named <prefix>-<pid>-<n> whose creating process is gone (a test run
    that was killed before its teardown)."""
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == prefix and parts[1].isdigit():
            if not os.path.exists(f"/proc/{parts[1]}"):
                subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")
