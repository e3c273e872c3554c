"""The main job behind scripts/serve.sh: a private smbd on 127.0.0.1 serving a demo share
through nfsbridge. Standard library only (runs with Debian's python3).

    python3 -m harness.serve start|stop|status
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .samba import DEFAULT_MODULE, SambaInstance, Share, User, _can_connect, ensure_unix_user

STATE = Path(os.environ.get("NFSBRIDGE_STATE", Path(__file__).resolve().parents[2] / ".state"))
ROOT = STATE / "serve"
PORT = int(os.environ.get("NFSBRIDGE_PORT", "445"))
DEMO = User(os.environ.get("NFSBRIDGE_DEMO_USER", "nfsbridge-demo"),
            os.environ.get("NFSBRIDGE_DEMO_PASSWORD", "nfsbridge-demo"))


def instance() -> SambaInstance:
    share = Share("demo", ROOT / "demo", {"vfs objects": "nfsbridge", "comment": "nfsbridge demo share"})
    return SambaInstance(ROOT / "smbd", [share], port=PORT, module=DEFAULT_MODULE,
                         log_level="1 nfsbridge:3")


def start() -> int:
    smbd = instance()
    if smbd.running():
        print(f"nfsbridge demo smbd is already running (pid {smbd.pid()}); 'scripts/serve.sh stop' stops it")
        print_usage(smbd)
        return 0
    if _can_connect(PORT):
        print(f"nfsbridge: error: something already listens on 127.0.0.1:{PORT} (a system smbd?). "
              f"Stop it, or pick another port: NFSBRIDGE_PORT=4445 scripts/serve.sh", file=sys.stderr)
        return 1
    uid = ensure_unix_user(DEMO.name)
    demo = smbd.shares[0].path
    first_time = not demo.exists()
    demo.mkdir(parents=True, exist_ok=True)
    for d in (STATE, ROOT):
        d.chmod(0o755)  # the demo user must be able to reach its share
    if first_time:
        (demo / "README.txt").write_text(
            "This directory is served over SMB through the nfsbridge VFS module.\n"
            f"On the server it is {demo}\n")
        for p in [demo, *demo.iterdir()]:
            shutil.chown(p, uid)
    smbd.write_config()
    smbd.add_user(DEMO)
    smbd.start(daemon=True)
    print(f"nfsbridge demo smbd started (pid {smbd.pid()}), serving {demo} as [demo] on 127.0.0.1:{PORT}")
    print_usage(smbd)
    return 0


def print_usage(smbd: SambaInstance) -> None:
    port = "" if PORT == 445 else f" -p {PORT}"
    print("Connect with:")
    print(f"  smbclient //127.0.0.1/demo{port} -U {DEMO.name}%{DEMO.password}")
    print(f"Logs: {smbd.log_dir}   Config: {smbd.conf}   Stop: scripts/serve.sh stop")
    if smbd.lease_bridge:
        print(f"Lease table: target/release/nfsbridge leases --socket {smbd.bridge_socket}")


def stop() -> int:
    smbd = instance()
    if not smbd.running():
        print("nfsbridge demo smbd is not running")
        return 0
    pid = smbd.pid()
    smbd.stop()
    print(f"nfsbridge demo smbd (pid {pid}) stopped")
    return 0


def status() -> int:
    smbd = instance()
    if smbd.running():
        print(f"running (pid {smbd.pid()}) on 127.0.0.1:{PORT}")
        return 0
    print("not running")
    return 3


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "start"
    actions = {"start": start, "stop": stop, "status": status}
    if action not in actions:
        print(f"usage: scripts/serve.sh [start|stop|status]", file=sys.stderr)
        sys.exit(2)
    sys.exit(actions[action]())
