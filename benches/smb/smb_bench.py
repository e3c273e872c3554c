"""scripts/bench.sh: nfsbridge side by side with plain Samba, `kernel oplocks = yes` and
vfs_nfs4acl_xattr, on one private smbd (own network namespace) with four shares on one file
system. Workloads run interleaved across the shares (the share order rotates every repetition)
so that machine noise hits every share alike; the report gives medians and spread, and ratios
against plain Samba computed per repetition (each pair ran back to back).

    python benches/smb/smb_bench.py [--quick] [--out DIR]

Writes DIR/results.json, DIR/latencies.json, DIR/table.txt and DIR/*.png; prints the table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.netns import NetNamespace                      # noqa: E402
from harness.samba import SambaInstance, Share, User, ensure_unix_user  # noqa: E402
from harness.smb_lease_client import SmbLeaseClient         # noqa: E402

import report                                               # noqa: E402
import workloads as wl                                      # noqa: E402


@dataclass(frozen=True)
class ShareProfile:
    name: str          # the smb.conf section
    label: str         # how the report names it
    options: dict
    use_oplock: bool   # the share grants no leases: the break probe asks for a batch oplock
    # Why the share is expected to miss local changes, shown only if it is measured incoherent.
    incoherent_because: str


# Directory leases are a global switch and only exist with `kernel oplocks = no`.
GLOBAL_OPTIONS = {"smb3 directory leases": "yes"}
PROFILES = [
    ShareProfile("plain", "plain", {"kernel oplocks": "no"}, False,
                 "plain Samba sees no local access"),
    ShareProfile("koplocks", "kernel oplocks", {"kernel oplocks": "yes"}, True,
                 "kernel oplocks grant no leases"),
    # xdr encoding as the issue asks. Samba 4.22.6's nfs4acl_xattr writes its xattr as the SMB
    # user, and security.* needs CAP_SYS_ADMIN: like the parity baseline it keeps its ACL in
    # user.*, and validate_mode is off (it would remove a security.* xattr as the user).
    ShareProfile("nfs4acl", "nfs4acl_xattr",
                 {"kernel oplocks": "no", "vfs objects": "nfs4acl_xattr", "nfs4acl_xattr:encoding": "xdr",
                  "nfs4acl_xattr:xattr_name": "user.nfs4acl_xdr", "nfs4acl_xattr:validate_mode": "no"},
                 False, "vfs_nfs4acl_xattr sees no local access"),
    # The same encoding as the nfs4acl_xattr share, so the SD numbers compare like for like.
    ShareProfile("nfsbridge", "nfsbridge",
                 {"kernel oplocks": "no", "vfs objects": "nfsbridge", "nfsbridge:acl encoding": "xdr"},
                 False, "the lease bridge did not back the grant (see the smbd and lease-bridge logs)"),
]


@dataclass(frozen=True)
class Plan:
    repetitions: int
    open_close: int
    create_delete: int
    io_bytes: int
    sd_get: int
    sd_set: int
    break_probes: int          # per share and repetition
    memory_files: int
    memory_repetitions: int
    batch_seconds: float       # upper bound of one batch
    acl_bench_args: tuple


QUICK = Plan(repetitions=5, open_close=150, create_delete=100, io_bytes=8 << 20, sd_get=200, sd_set=120,
             break_probes=4, memory_files=500, memory_repetitions=1, batch_seconds=5.0,
             acl_bench_args=("--samples", "3", "--sample-ms", "40"))
FULL = Plan(repetitions=10, open_close=400, create_delete=200, io_bytes=32 << 20, sd_get=400, sd_set=200,
            break_probes=8, memory_files=2000, memory_repetitions=2, batch_seconds=30.0,
            acl_bench_args=())

THROUGHPUT_WORKLOADS = ["open_close", "create_delete", "read", "write", "sd_get", "sd_set"]
BREAK_WORKLOADS = list(report.BREAK_WORKLOADS)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine_info() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    smbd = subprocess.run(["smbd", "--version"], capture_output=True, text=True).stdout.strip()
    deb = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "samba"], capture_output=True, text=True).stdout
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "samba": smbd,
            "samba_debian": deb, "python": platform.python_version(),
            "commit": commit + ("+changes" if dirty else ""),
            "loadavg_start": Path("/proc/loadavg").read_text().split()[:3]}


class Bench:
    def __init__(self, plan: Plan, out: Path, work: Path):
        self.plan = plan
        self.out = out
        self.work = work
        self.user = User("nfsbridge-bench", "Bench-" + uuid.uuid4().hex[:12])
        self.netns: NetNamespace | None = None
        self.smbd: SambaInstance | None = None
        self.clients: dict[str, tuple[SmbLeaseClient, SmbLeaseClient]] = {}
        self.share_dirs: dict[str, Path] = {}
        self.sd_handles: dict = {}
        self.sd_variants: dict[str, list[bytes]] = {}
        self.acl_storage: dict[str, list[str]] = {}
        self.server_pids: dict[str, int] = {}
        # raw[workload][share] = list of per-repetition records
        self.raw: dict[str, dict[str, list]] = {}
        self.notes: list[str] = []

    # -- setup and teardown ------------------------------------------------------------------
    def start(self) -> None:
        uid = ensure_unix_user(self.user.name)
        shares = []
        data = self.work / "shares"
        for profile in PROFILES:
            path = data / profile.name
            path.mkdir(parents=True)
            os.chown(path, uid, -1)
            self.share_dirs[profile.name] = path
            shares.append(Share(profile.name, path, dict(profile.options)))
        self.netns = NetNamespace(prefix="nfsbb")
        # log level 0: a debug log would cost every share time and hide the module's own cost.
        self.smbd = SambaInstance(self.work / "smbd", shares, netns=self.netns, log_level="0",
                                  global_options=dict(GLOBAL_OPTIONS))
        self.smbd.write_config()
        self.smbd.add_user(self.user)
        self.smbd.start()
        parent = self.smbd.pid()
        for profile in PROFILES:
            before = wl.smbd_children(parent)
            holder = self.connect(profile.name)
            # The smbd child that serves this share's main connection: its CPU time per batch
            # is the server's cost without the Python client's.
            self.server_pids[profile.name] = single_new_child(before, wl.smbd_children(parent))
            self.clients[profile.name] = (holder, self.connect(profile.name))
        for profile in PROFILES:
            self.prepare_share(profile.name)

    def connect(self, share: str) -> SmbLeaseClient:
        return SmbLeaseClient(share, self.user.name, self.user.password, netns=self.netns)

    def prepare_share(self, share: str) -> None:
        """The files every workload uses, created over SMB so that each module sets them up its
        own way (ACL xattrs, POSIX mirror)."""
        client = self.clients[share][0]
        for name in ("open-close.dat", "local-break.dat", "sd.dat"):
            handle, _ = wl.open_file(client, name, lease=None, create=True)
            handle.write(b"nfsbridge bench\n", 0)
            handle.close()
        handle, _ = wl.open_file(client, "read-write.dat", lease=None, create=True)
        chunk = os.urandom(wl.IO_CHUNK)
        for offset in range(0, self.plan.io_bytes, wl.IO_CHUNK):
            handle.write(chunk, offset)
        handle.close()
        handle, _ = wl.open_directory(client, "leased-dir", lease=None, create=True)
        handle.close()
        sd_handle = wl.open_for_security(client, "sd.dat")
        owner, group = wl.owner_and_group(wl.query_security(client, sd_handle))
        variants = wl.dacl_variants(owner, group)
        # The SD set workload must really change what the share stores: each variant, once
        # set, must read back differently from the other.
        seen = []
        for sd in variants:
            wl.set_security(client, sd_handle, sd)
            seen.append(wl.query_security(client, sd_handle, wl.DACL_SECURITY_INFORMATION))
        if seen[0] == seen[1]:
            raise RuntimeError(f"{share}: setting two different DACLs reads back the same SD")
        self.sd_handles[share] = sd_handle
        self.sd_variants[share] = variants
        # Where each share keeps the ACL (shows that the modules are really in the path).
        self.acl_storage[share] = sorted(os.listxattr(self.share_dirs[share] / "sd.dat"))

    def stop(self) -> None:
        for holder, other in self.clients.values():
            for client in (holder, other):
                try:
                    client.close()
                except Exception as exc:  # noqa: BLE001 - teardown goes on
                    log(f"closing a client: {exc}")
        self.clients.clear()
        if self.smbd is not None:
            self.smbd.stop()
        if self.netns is not None:
            self.netns.close()

    # -- running -------------------------------------------------------------------------------
    def record(self, workload: str, share: str, entry: dict) -> None:
        self.raw.setdefault(workload, {}).setdefault(share, []).append(entry)

    def run_repetitions(self) -> None:
        plan = self.plan
        names = [p.name for p in PROFILES]
        profiles = {p.name: p for p in PROFILES}
        for rep in range(plan.repetitions):
            order = names[rep % len(names):] + names[:rep % len(names)]
            log(f"repetition {rep + 1}/{plan.repetitions}, share order {' '.join(order)}")
            for workload in THROUGHPUT_WORKLOADS:
                for share in order:
                    # A failing workload is reported as failed for that share, not skipped silently.
                    try:
                        cpu_before = wl.server_cpu_ns(self.server_pids[share])
                        batch = self.throughput_batch(workload, share, rep)
                        server_cpu = wl.server_cpu_ns(self.server_pids[share]) - cpu_before
                    except Exception as exc:  # noqa: BLE001 - recorded and shown in the report
                        log(f"{workload} on {share} failed: {exc!r}")
                        self.record(workload, share, {"rep": rep, "error": repr(exc)})
                        continue
                    self.record(workload, share, {"rep": rep, "rate": batch.rate, "units": batch.units,
                                                  "elapsed": batch.elapsed, "granted": batch.granted,
                                                  "server_cpu_ns": server_cpu,
                                                  "latencies": batch.latencies})
            for workload in BREAK_WORKLOADS:
                for share in order:
                    probes = []
                    for i in range(plan.break_probes):
                        try:
                            probes.append(asdict(self.break_probe(workload, profiles[share], rep * plan.break_probes + i)))
                        except Exception as exc:  # noqa: BLE001 - recorded and shown in the report
                            log(f"{workload} on {share} failed: {exc!r}")
                            probes.append({"granted": "error", "coherent": False, "latency": None, "error": repr(exc)})
                    self.record(workload, share, {"rep": rep, "probes": probes})

    def throughput_batch(self, workload: str, share: str, rep: int) -> wl.Batch:
        client = self.clients[share][0]
        deadline = time.perf_counter() + self.plan.batch_seconds
        p = self.plan
        if workload == "open_close":
            return wl.open_close(client, "open-close.dat", p.open_close, deadline)
        if workload == "create_delete":
            return wl.create_delete(client, f"create-{rep}", p.create_delete, deadline)
        if workload == "read":
            return wl.read_leased(client, "read-write.dat", p.io_bytes, deadline)
        if workload == "write":
            return wl.write_leased(client, "read-write.dat", p.io_bytes, deadline)
        if workload == "sd_get":
            return wl.sd_get(client, self.sd_handles[share], p.sd_get, deadline)
        if workload == "sd_set":
            return wl.sd_set(client, self.sd_handles[share], self.sd_variants[share], p.sd_set, deadline)
        raise ValueError(workload)

    def break_probe(self, workload: str, profile: ShareProfile, index: int) -> wl.BreakProbe:
        holder, other = self.clients[profile.name]
        share_dir = self.share_dirs[profile.name]
        if workload == "local_open_break":
            return wl.local_open_break(holder, share_dir, "local-break.dat", profile.use_oplock)
        if workload == "local_open_break_batch":
            return wl.local_open_break(holder, share_dir, "local-break.dat", use_oplock=True)
        if workload == "dirlease_break_smb":
            return wl.directory_break_by_smb(holder, other, "leased-dir", index)
        if workload == "dirlease_break_local":
            return wl.directory_break_by_local(holder, share_dir, "leased-dir", index)
        raise ValueError(workload)

    def run_memory(self) -> None:
        """Peak and current RSS of the smbd child serving one connection that holds many files
        open, each with its own RWH lease; a fresh connection (so a fresh child) per share."""
        parent = self.smbd.pid()
        names = [p.name for p in PROFILES]
        for rep in range(self.plan.memory_repetitions):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for share in order:
                try:
                    self.memory_run(parent, share, rep)
                except Exception as exc:  # noqa: BLE001 - recorded and shown in the report
                    log(f"memory on {share} failed: {exc!r}")
                    self.record("memory", share, {"rep": rep, "error": repr(exc)})
                for f in self.share_dirs[share].glob(f"mem-{rep}-*.dat"):
                    f.unlink()

    def memory_run(self, parent: int, share: str, rep: int) -> None:
        before = wl.smbd_children(parent)
        client = self.connect(share)
        try:
            child = single_new_child(before, wl.smbd_children(parent))
            idle = wl.memory_kib(child)
            deadline = time.perf_counter() + 10 * self.plan.batch_seconds
            handles = wl.hold_many_leased_files(client, f"mem-{rep}", self.plan.memory_files, deadline)
            held = wl.memory_kib(child)
            leased = sum(1 for _, granted in handles if granted.startswith("lease"))
            self.record("memory", share, {"rep": rep, "child": child, "files": len(handles), "leased_opens": leased,
                                          "rss_idle_kib": idle["VmRSS"], "rss_held_kib": held["VmRSS"],
                                          "hwm_held_kib": held["VmHWM"],
                                          "per_open_kib": (held["VmRSS"] - idle["VmRSS"]) / max(1, len(handles))})
            log(f"memory {share}: {len(handles)} open files, RSS {idle['VmRSS']} -> {held['VmRSS']} KiB")
        finally:
            client.close()


def single_new_child(before: set[int], after: set[int]) -> int:
    new = after - before
    if len(new) != 1:
        raise RuntimeError(f"expected one new smbd child for the connection, found {sorted(new)}")
    return new.pop()


def run_acl_translation_bench(plan: Plan) -> dict:
    """benches/acl_throughput.rs in release mode: its markdown table, parsed (ACEs/s)."""
    cmd = ["cargo", "bench", "--locked", "-q", "--bench", "acl_throughput", "--", "--markdown", *plan.acl_bench_args]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return {"error": f"{' '.join(cmd)} failed: {out.stderr[-2000:]}", "command": " ".join(cmd)}
    rows, sizes = {}, []
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == "operation":
            sizes = cells[1:]
        elif sizes and len(cells) == len(sizes) + 1 and not set(cells[1]) <= set("-:"):
            rows[cells[0]] = {size: parse_rate(cell) for size, cell in zip(sizes, cells[1:])}
    return {"command": " ".join(cmd), "unit": "ACEs/s (one thread)", "sizes": sizes, "rows": rows,
            "markdown": out.stdout.strip()}


def parse_rate(cell: str) -> float | None:
    m = re.match(r"^([\d.]+)\s*([kMG]?)$", cell)
    if not m:
        return None
    return float(m[1]) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[m[2]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and smaller batches (about 2 minutes)")
    parser.add_argument("--out", type=Path, help="results directory (default bench-results/<UTC timestamp>)")
    parser.add_argument("--command", default="", help="the command line to record in the results")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("scripts/bench.sh must run as root (smbd, users, network namespaces)", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    # SIGTERM (timeout, a CI runner) unwinds like Ctrl-C, so that the finally below stops smbd
    # and removes its namespace and share directory.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"stopped by signal {signum}"))
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or REPO / "bench-results" / stamp.strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": stamp.strftime("%Y-%m-%d %H:%M UTC"), "mode": "quick" if args.quick else "full",
            "command": args.command.strip() or ("scripts/bench.sh" + (" --quick" if args.quick else "")),
            "machine": machine_info(), "plan": asdict(plan),
            "shares": {p.name: {"label": p.label, "options": {**GLOBAL_OPTIONS, **p.options}} for p in PROFILES}}
    started = time.monotonic()
    # On the real disk, not tmpfs: xattrs and POSIX ACLs as a real export has them.
    work = Path(tempfile.mkdtemp(prefix="nfsbridge-bench-", dir=os.environ.get("NFSBRIDGE_BENCH_DIR", "/var/tmp")))
    work.chmod(0o755)
    bench = Bench(plan, out, work)
    try:
        log(f"smbd with shares {', '.join(p.name for p in PROFILES)} under {work}")
        bench.start()
        bench.run_repetitions()
        log("memory per leased open file")
        bench.run_memory()
    finally:
        bench.stop()
        shutil.rmtree(work, ignore_errors=True)
    log("ACL translation throughput (cargo bench acl_throughput)")
    acl = run_acl_translation_bench(plan)
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["xattrs_on_sd_file"] = bench.acl_storage
    meta["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results = report.summarize(meta, PROFILES, bench.raw, acl)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "latencies.json").write_text(json.dumps(report.latency_dump(bench.raw)) + "\n")
    table = report.table(results)
    (out / "table.txt").write_text(table + "\n")
    charts = report.charts(results, bench.raw, out)
    print(table)
    print(f"\nresults: {out}/results.json; charts: {', '.join(c.name for c in charts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
