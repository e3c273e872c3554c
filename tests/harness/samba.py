"""A private smbd for tests and for scripts/serve.sh.

Each instance lives entirely under its own directory (config, passdb, locks, logs, pid) and
listens on its own port on 127.0.0.1, so it never touches /etc/samba or the system's Samba
state, and never collides with another instance. smbd loads modules only from the system's
modules directory and rejects absolute paths in `vfs objects`, so smbd runs in a private mount
namespace (unshare -m) where a copy of that directory, plus nfsbridge.so, is bind-mounted over
the original. Standard library only: scripts/serve.sh runs this with Debian's python3.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .netns import NetNamespace

SAMBA_MODULES_DIR = Path("/usr/lib/x86_64-linux-gnu/samba")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODULE = REPO / "target" / "release" / "libvfs_nfsbridge.so"
DEFAULT_CLI = REPO / "target" / "release" / "nfsbridge"


@dataclass
class Share:
    """One [section]: its path and any smb.conf parameters (e.g. {"vfs objects": "nfsbridge"})."""

    name: str
    path: Path
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class User:
    name: str
    password: str


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def ensure_unix_user(name: str) -> int:
    """Creates a no-login system user if missing; returns its uid."""
    try:
        return int(subprocess.run(["id", "-u", name], check=True, capture_output=True, text=True).stdout)
    except subprocess.CalledProcessError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", name], check=True)
        return int(subprocess.run(["id", "-u", name], check=True, capture_output=True, text=True).stdout)


class SambaInstance:
    """A private smbd serving `shares` on 127.0.0.1:`port`, state under `root`."""

    def __init__(self, root: Path, shares: list[Share], port: int | None = None,
                 module: Path = DEFAULT_MODULE, log_level: str = "1 nfsbridge:10 vfs:3",
                 global_options: dict[str, str] | None = None, netns: NetNamespace | None = None,
                 lease_bridge: bool = True, bridge_args: list[str] | None = None):
        """With `netns`, smbd listens on 127.0.0.1:445 inside that namespace (the default
        port, which every Samba client tool can reach) and client helpers run there; without
        it, on 127.0.0.1:`port` (a free port unless given) of the host.

        When a share loads nfsbridge and `lease_bridge` is true, the instance runs its own
        lease bridge (`nfsbridge lease-bridge`, extra arguments `bridge_args`) on a socket
        under `root`, serving exactly these shares, and points the module at it."""
        self.root = Path(root)
        self.shares = shares
        self.netns = netns
        self.port = port or (445 if netns else free_port())
        self.module = Path(module)
        self.log_level = log_level
        self.global_options = global_options or {}
        self.conf = self.root / "smb.conf"
        self.log_dir = self.root / "log"
        self.proc: subprocess.Popen | None = None
        self.lease_bridge = lease_bridge and any(
            "nfsbridge" in share.options.get("vfs objects", "") for share in shares)
        self.bridge_args = bridge_args or []
        self.bridge_socket = self.root / "lease-bridge" / "bridge.sock"
        self.bridge: subprocess.Popen | None = None

    # -- configuration ---------------------------------------------------------------------
    def write_config(self) -> None:
        for d in ("private", "lock", "state", "cache", "pid", "log", "ncalrpc", "vfs"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        lines = [
            "[global]",
            "\tserver role = standalone server",
            "\tpassdb backend = tdbsam",
            f"\tprivate dir = {self.root}/private",
            f"\tlock directory = {self.root}/lock",
            f"\tstate directory = {self.root}/state",
            f"\tcache directory = {self.root}/cache",
            f"\tpid directory = {self.root}/pid",
            f"\tncalrpc dir = {self.root}/ncalrpc",
            f"\tlog file = {self.log_dir}/log.%m",
            "\tmax log size = 0",
            f"\tlog level = {self.log_level}",
            f"\tsmb ports = {self.port}",
            "\tinterfaces = 127.0.0.1",
            "\tbind interfaces only = yes",
            "\tdisable netbios = yes",
            "\tload printers = no",
            "\tprinting = bsd",
            "\tprintcap name = /dev/null",
            "\tdisable spoolss = yes",
            "\tusershare max shares = 0",
            "\twinbind scan trusted domains = no",
        ]
        if self.lease_bridge:
            lines.append(f"\tnfsbridge:lease bridge socket = {self.bridge_socket}")
        lines += [f"\t{k} = {v}" for k, v in self.global_options.items()]
        for share in self.shares:
            lines += [f"[{share.name}]", f"\tpath = {share.path}", "\tread only = no"]
            lines += [f"\t{k} = {v}" for k, v in share.options.items()]
        self.conf.write_text("\n".join(lines) + "\n")

    def prepare_modules(self) -> Path:
        """A copy of the system's VFS module directory with nfsbridge.so added."""
        vfs = self.root / "vfs"
        for so in (SAMBA_MODULES_DIR / "vfs").glob("*.so"):
            shutil.copy2(so, vfs / so.name)
        if self.module.exists():
            shutil.copy2(self.module, vfs / "nfsbridge.so")
        return vfs

    def add_user(self, user: User) -> None:
        ensure_unix_user(user.name)
        subprocess.run(["smbpasswd", "-c", str(self.conf), "-a", "-s", user.name],
                       input=f"{user.password}\n{user.password}\n", text=True, check=True,
                       capture_output=True)

    # -- life cycle --------------------------------------------------------------------------
    def _smbd_command(self, daemon: bool) -> list[str]:
        vfs = self.root / "vfs"
        mode = "-D" if daemon else "--foreground --no-process-group"
        inner = (f"mount --bind '{vfs}' '{SAMBA_MODULES_DIR}/vfs' && "
                 f"exec smbd {mode} -s '{self.conf}'")
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", inner]
        return self.netns.wrap(argv) if self.netns else argv

    def run_client(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """Runs a client command where it can reach this smbd."""
        return subprocess.run(self.netns.wrap(argv) if self.netns else argv, **kw)

    def _probe(self) -> bool:
        if self.netns:
            with self.netns.entered():
                return _can_connect(self.port)
        return _can_connect(self.port)

    def start_bridge(self, timeout: float = 10.0) -> None:
        """Starts this instance's lease bridge and waits for its socket."""
        self.bridge_socket.parent.mkdir(parents=True, exist_ok=True)
        self.bridge_socket.unlink(missing_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        shares = [arg for share in self.shares for arg in ("--share", str(share.path))]
        out = open(self.log_dir / "lease-bridge.log", "ab")
        self.bridge = subprocess.Popen(
            [str(DEFAULT_CLI), "lease-bridge", "--socket", str(self.bridge_socket), *shares,
             *self.bridge_args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")})
        # scripts/serve.sh stops it from another process: keep its pid.
        (self.bridge_socket.parent / "bridge.pid").write_text(f"{self.bridge.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.bridge.poll() is not None:
                raise RuntimeError(f"lease bridge exited with {self.bridge.returncode}\n{self.logs()}")
            if self.bridge_socket.exists():
                return
            time.sleep(0.02)
        raise RuntimeError(f"lease bridge did not create {self.bridge_socket} within {timeout}s")

    def bridge_pid(self) -> int | None:
        if self.bridge is not None:
            return self.bridge.pid if self.bridge.poll() is None else None
        try:
            pid = int((self.bridge_socket.parent / "bridge.pid").read_text())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"lease-bridge" in cmdline and _alive(pid) else None

    def stop_bridge(self, sig: int = signal.SIGTERM) -> None:
        if self.bridge is None:
            pid = self.bridge_pid()
            if pid is not None:
                os.kill(pid, sig)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.05)
            return
        if self.bridge.poll() is None:
            self.bridge.send_signal(sig)
            try:
                self.bridge.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.bridge.kill()
                self.bridge.wait()
        self.bridge = None

    def start(self, daemon: bool = False, timeout: float = 20.0) -> None:
        """Starts the lease bridge (if any) and smbd, and waits until smbd accepts connections."""
        self.write_config()
        self.prepare_modules()
        if self.lease_bridge and self.bridge is None:
            self.start_bridge()
        if daemon:
            subprocess.run(self._smbd_command(daemon=True), check=True)
        else:
            out = open(self.log_dir / "smbd.stdout", "ab")
            # A foreground smbd exits when its standard input closes: keep a pipe open for
            # its lifetime, so that it also dies with the test run that started it.
            self.proc = subprocess.Popen(self._smbd_command(daemon=False), stdin=subprocess.PIPE,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"smbd exited with {self.proc.returncode}\n{self.logs()}")
            if self._probe():
                return
            time.sleep(0.05)
        raise RuntimeError(f"smbd did not listen on 127.0.0.1:{self.port} within {timeout}s\n{self.logs()}")

    def pid(self) -> int | None:
        pidfile = self.root / "pid" / "smbd.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return self.proc.pid if self.proc else None

    def running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the parent smbd and its children (they share its process group)."""
        pid = self.pid()
        if pid is None:
            self._stop_rpc_helpers()
            self.stop_bridge()
            return
        try:
            pgid = os.getpgid(pid)
            os.killpg(pgid, signal.SIGTERM)
        except OSError:
            pgid = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            if self.proc is not None:
                self.proc.poll()
            time.sleep(0.05)
        if self.running() and pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._stop_rpc_helpers()
        self.stop_bridge()

    def rpc_helpers(self) -> list[int]:
        """Pids of the samba-dcerpcd / rpcd_* processes started for this instance."""
        marker = f"--configfile={self.conf}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes().split(b"\0") and _alive(int(entry.name)):
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def _stop_rpc_helpers(self) -> None:
        """smbd starts samba-dcerpcd and its rpcd_* workers on demand (smbcacls' LSA lookups);
        they leave smbd's process group, so find them by our configuration file."""
        helpers = self.rpc_helpers()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in helpers:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and any(_alive(pid) for pid in helpers):
                time.sleep(0.05)

    # -- inspection --------------------------------------------------------------------------
    def logs(self, max_bytes: int = 20000) -> str:
        """Every log file of this instance, each cut to its last `max_bytes`."""
        parts = []
        for f in sorted(p for p in self.log_dir.glob("*") if p.is_file()):
            text = f.read_bytes()[-max_bytes:].decode(errors="replace")
            parts.append(f"===== {f} =====\n{text}")
        return "\n".join(parts)

    def log_text(self) -> str:
        return "\n".join(f.read_text(errors="replace") for f in sorted(self.log_dir.glob("log.*")))

    def unc(self, share: str) -> str:
        return f"//127.0.0.1/{share}"

    def client_args(self, user: User) -> list[str]:
        """Options that point a Samba client tool (smbclient, smbcacls, smbtorture) here."""
        port = [] if self.port == 445 else ["-p", str(self.port)]  # smbclient and smbtorture
        return ["-s", "/dev/null", *port, "-U", f"{user.name}%{user.password}"]

    def smbclient(self, share: str, user: User, commands: str, check: bool = True,
                  extra: list[str] | None = None) -> subprocess.CompletedProcess:
        cmd = ["smbclient", self.unc(share), *self.client_args(user), *(extra or []), "-c", commands]
        return self.run_client(cmd, capture_output=True, text=True, check=check, timeout=60)

    def smbcacls(self, share: str, path: str, user: User, *args: str) -> subprocess.CompletedProcess:
        if self.port != 445:
            raise RuntimeError("smbcacls can only reach port 445: start this smbd in a NetNamespace")
        cmd = ["smbcacls", self.unc(share), path, *self.client_args(user), *args]
        return self.run_client(cmd, capture_output=True, text=True, timeout=60)
