"""The NFS actor, one interface over two clients:

- host tier: nfs-rs (PyPI; NFSv4.0/4.1 in userspace) talking to the bed's Ganesha, its socket made
  inside the bed's network namespace;
- kernel tier: the guest's kernel NFSv4.2 mount of the kernel nfsd export (then the Linux NFS
  client's own behaviour, caching and tools such as nfs4_setfacl come with it).

Paths are relative to the export's root in both.
"""
from __future__ import annotations

import os
from pathlib import Path

from .netns import NetNamespace


class NfsRsClient:
    """nfs-rs against nfs://127.0.0.1/<pseudo>. The connection is made inside `netns`."""

    tier = "host"

    def __init__(self, url: str, netns: NetNamespace | None, uid: int = 0, gid: int = 0,
                 operation_timeout: float = 60.0):
        from nfs_rs import Client
        self.url = url
        if netns:
            with netns.entered():
                self.client = Client.connect(url, uid=uid, gid=gid, connect_timeout=5,
                                             operation_timeout=operation_timeout)
        else:
            self.client = Client.connect(url, uid=uid, gid=gid, connect_timeout=5,
                                         operation_timeout=operation_timeout)

    @property
    def version(self) -> str:
        return str(self.client.version.value)

    def read(self, name: str) -> bytes:
        with self.client.open(name, "rb") as f:
            return f.read()

    def write(self, name: str, data: bytes, offset: int = 0) -> None:
        """OPEN(write) an existing file and WRITE at `offset` (no truncate)."""
        with self.client.open(name, "r+b") as f:
            f.write_at(data, offset)

    def create(self, name: str, data: bytes = b"") -> None:
        with self.client.open(name, "wb") as f:
            if data:
                f.write(data)

    def unlink(self, name: str) -> None:
        self.client.unlink(name)

    def rename(self, old: str, new: str) -> None:
        self.client.rename(old, new)

    def chmod(self, name: str, mode: int) -> None:
        self.client.chmod(name, mode)

    def truncate(self, name: str, size: int) -> None:
        self.client.truncate(name, size)

    def mkdir(self, name: str) -> None:
        self.client.mkdir(name)

    def stat(self, name: str):
        return self.client.stat(name)

    def close(self) -> None:
        self.client.close()


class KernelMountClient:
    """The Linux NFS client: plain file operations under the NFSv4.2 mount point `mount`."""

    tier = "kernel"

    def __init__(self, mount: Path):
        self.mount = Path(mount)
        self.version = "4.2"

    def path(self, name: str) -> Path:
        return self.mount / name

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def write(self, name: str, data: bytes, offset: int = 0) -> None:
        fd = os.open(self.path(name), os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
            os.fsync(fd)          # the WRITE reaches nfsd now, not at some later flush
        finally:
            os.close(fd)

    def create(self, name: str, data: bytes = b"") -> None:
        with open(self.path(name), "wb") as f:
            f.write(data)

    def unlink(self, name: str) -> None:
        os.unlink(self.path(name))

    def rename(self, old: str, new: str) -> None:
        os.rename(self.path(old), self.path(new))

    def chmod(self, name: str, mode: int) -> None:
        os.chmod(self.path(name), mode)

    def truncate(self, name: str, size: int) -> None:
        os.truncate(self.path(name), size)

    def mkdir(self, name: str) -> None:
        os.mkdir(self.path(name))

    def stat(self, name: str):
        return os.stat(self.path(name))

    def close(self) -> None:
        pass
