"""A private NFS-Ganesha 5.9 (FSAL_VFS) exporting one directory over NFSv4.0/4.1.

It listens on port 2049 inside a network namespace the caller owns (the same namespace as the
bed's smbd, where loopback is the only interface). `Bind_addr = 127.0.0.1` cannot be used there:
Ganesha resolves it with AI_ADDRCONFIG, which finds no configured address when only loopback
exists and refuses to start. It keeps every file (config, log, pid, recovery state) under its own directory, and
uses the coherence settings measured in shared/recipes/ganesha.sh:

- `Attr_Expiration_Time = 0`: without it a local change is invisible to NFS GETATTR for up to 60 s;
- `MDCACHE { Cache_FDs = false; LRU_Run_Interval = 1; }`: otherwise Ganesha keeps global fds open
  for minutes, and an open fd makes every F_WRLCK kernel lease attempt fail with EAGAIN;
- `Only_Numeric_Owners`: owners are "0"/"1000" instead of names an idmapper must resolve;
- `Graceless`: serve at once instead of sitting in a 90 s grace period.

FSAL_VFS grants no delegations and stores NFSv4 ACLs as POSIX ACLs (lossy).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .netns import NetNamespace

GANESHA = "/usr/bin/ganesha.nfsd"
NFS_PORT = 2049


class GaneshaInstance:
    """Ganesha serving `export_dir` as the NFSv4 pseudo path `pseudo`, state under `root`."""

    def __init__(self, root: Path, export_dir: Path, netns: NetNamespace, pseudo: str = "/export"):
        self.root = Path(root)
        self.export_dir = Path(export_dir)
        self.netns = netns
        self.pseudo = pseudo
        self.conf = self.root / "ganesha.conf"
        self.log_file = self.root / "ganesha.log"
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> None:
        (self.root / "recovery").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"""\
NFS_CORE_PARAM {{
    Protocols = 4;                # NFSv4.x only: no MOUNT/NLM/RQUOTA, so no rpcbind
    NFS_Port = {NFS_PORT};
    Enable_NLM = false;
    Enable_RQUOTA = false;
}}
NFSv4 {{
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = {self.root}/recovery;
    Only_Numeric_Owners = true;
}}
MDCACHE {{
    Cache_FDs = false;
    LRU_Run_Interval = 1;
}}
EXPORT {{
    Export_Id = 1;
    Path = {self.export_dir};
    Pseudo = {self.pseudo};
    Protocols = 4;
    Access_Type = RW;
    Squash = No_Root_Squash;
    Sectype = sys;
    Attr_Expiration_Time = 0;
    FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
""")

    def start(self, timeout: float = 20.0) -> None:
        """Starts ganesha.nfsd in the foreground (so it dies with its process group) and waits
        until it accepts connections on 127.0.0.1:2049 in the namespace."""
        self.write_config()
        out = open(self.root / "ganesha.stdout", "ab")
        argv = [GANESHA, "-F", "-f", str(self.conf), "-L", str(self.log_file),
                "-p", str(self.root / "ganesha.pid"), "-N", "NIV_EVENT"]
        self.proc = subprocess.Popen(self.netns.wrap(argv), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ganesha.nfsd exited with {self.proc.returncode}\n{self.logs()}")
            if self._listening():
                return
            time.sleep(0.05)
        raise RuntimeError(f"ganesha.nfsd did not listen on 127.0.0.1:{NFS_PORT} within {timeout}s\n{self.logs()}")

    def _listening(self) -> bool:
        with self.netns.entered():
            try:
                socket.create_connection(("127.0.0.1", NFS_PORT), timeout=0.2).close()
                return True
            except OSError:
                return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def url(self, version: str = "4.1") -> str:
        """The nfs:// URL of the export, for nfs-rs and libnfs-utils (nfs-ls, nfs-cat)."""
        return f"nfs://127.0.0.1{self.pseudo}?version={version}"

    def logs(self, max_bytes: int = 20000) -> str:
        parts = []
        for f in (self.log_file, self.root / "ganesha.stdout", self.conf):
            if f.is_file():
                text = f.read_bytes()[-max_bytes:].decode(errors="replace")
                parts.append(f"===== {f} =====\n{text}")
        return "\n".join(parts)
