"""The namespace watch's window (issue 7): how long after a local or NFS change in a directory
the SMB client holding a directory lease on it gets the break, and how long after a local
rename or delete of a file an RH lease on it loses H. Not a test: numbers depend on the machine.

One test bed (docs/test-bed.md; the tier NFSBRIDGE_TIER names: host = a private smbd and
NFS-Ganesha in one network namespace with nfs-rs as the NFS client, kernel = inside the 7.3 VM
with kernel nfsd and an NFSv4.2 mount; local changes by this process). For each change kind and
repetition: open the directory (or file) over SMB with an RH lease, take t0, make the change,
take t1 when the call returned (the change is visible), and take the time the client's receive
thread got the break notification. Windows from t1 (change visible -> break received; negative
when the break arrived before the change's call returned: with directory delegations the change
waits for the break) and from t0, and the change's own duration t1 - t0.

    dirlease_bench.py [--reps N] [--out DIR] [--profile nfsbridge|plain] [--option KEY=VALUE]...
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from harness.bed import Bed                                   # noqa: E402
from harness.fixtures import TEST_USER                        # noqa: E402
from harness.samba import ensure_unix_user                    # noqa: E402
from harness.smb_lease_client import LeaseBreak, lease_text   # noqa: E402

NO_BREAK_AFTER = 2.0  # seconds: a change that brought no break by then is counted as "none"


def local_changes(bed, d: str, i: int):
    return {
        "local create": lambda: bed.local.write(f"{d}/c{i}", b"x"),
        "local delete": lambda: os.unlink(bed.local.path(f"{d}/old")),
        "local rename": lambda: os.rename(bed.local.path(f"{d}/old"), bed.local.path(f"{d}/r{i}")),
        "local mkdir": lambda: os.mkdir(bed.local.path(f"{d}/m{i}")),
    }


def nfs_changes(bed, d: str, i: int):
    return {
        "nfs create": lambda: bed.nfs.create(f"{d}/n{i}", b"x"),
        "nfs delete": lambda: bed.nfs.unlink(f"{d}/old"),
        "nfs rename": lambda: bed.nfs.rename(f"{d}/old", f"{d}/r{i}"),
    }


def handle_changes(bed, name: str, i: int):
    return {
        "local rename of a file (H)": lambda: os.rename(bed.local.path(name), bed.local.path(f"{name}.r{i}")),
        "local delete of a file (H)": lambda: os.unlink(bed.local.path(name)),
    }


def probe(smb, open_target, change) -> tuple[float, float, float] | None:
    """(break - t1, break - t0, t1 - t0) in seconds, or None when no break came."""
    target = open_target()
    assert target.lease_state & 0x2, f"no H granted: {lease_text(target.lease_state)}"
    t0 = time.perf_counter()
    change()
    t1 = time.perf_counter()
    try:
        brk = smb.wait_break(timeout=NO_BREAK_AFTER)
    except TimeoutError:
        target.close()
        return None
    assert isinstance(brk, LeaseBreak) and brk.lease_key == target.lease_key
    smb.ack_lease_break(brk)
    target.close()
    return brk.received_at - t1, brk.received_at - t0, t1 - t0


def summary(values: list[float]) -> dict:
    if not values:
        return {}
    ms = sorted(v * 1000 for v in values)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"n": len(ms), "min": ms[0], "p25": q[24], "median": statistics.median(ms),
            "p75": q[74], "p90": q[89], "p99": q[98], "max": ms[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--profile", default="nfsbridge")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="an smb.conf option for the share, e.g. 'nfsbridge:directory delegations=no'")
    ap.add_argument("--command", default="")
    args = ap.parse_args()
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or REPO / "bench-results" / ("dirlease-" + stamp.strftime("%Y%m%dT%H%M%SZ"))
    out.mkdir(parents=True, exist_ok=True)
    ensure_unix_user(TEST_USER.name)
    work = Path(tempfile.mkdtemp(prefix="nfsbridge-bench-"))
    work.chmod(0o755)
    samples: dict[str, list] = {}
    load_start = os.getloadavg()
    started = time.time()
    options = dict(o.split("=", 1) for o in args.option)
    with Bed(work, TEST_USER, args.profile, options or None) as bed, bed.smb() as smb:
        for i in range(args.reps):
            d = f"d{i}"
            bed.local.mkdir(d)
            os.chmod(bed.local.path(d), 0o777)
            kinds = {**local_changes(bed, d, i), **nfs_changes(bed, d, i)}
            for kind, change in kinds.items():
                bed.local.write(f"{d}/old", b"x")      # what delete/rename act on
                opened = lambda: smb.open(d, lease="RH", directory=True, write=False, create=False)
                samples.setdefault(kind, []).append(probe(smb, opened, change))
                if os.path.exists(bed.local.path(f"{d}/old")):
                    os.unlink(bed.local.path(f"{d}/old"))
            for kind, change in handle_changes(bed, f"f{i}", i).items():
                bed.local.write(f"f{i}", b"x")
                os.chmod(bed.local.path(f"f{i}"), 0o666)
                opened = lambda: smb.open(f"f{i}", lease="RH", write=False, create=False)
                samples.setdefault(kind, []).append(probe(smb, opened, change))
        # The mode line each smbd process logs when it first needs the watch.
        mode = next((line.strip() for line in bed.smbd.log_text().splitlines()
                     if line.strip().startswith("namespace watch:")), "")
    results = {}
    for kind, values in samples.items():
        got = [v for v in values if v is not None]
        results[kind] = {"breaks": len(got), "changes": len(values),
                         "from_visible_ms": summary([v[0] for v in got]),
                         "from_start_ms": summary([v[1] for v in got]),
                         "change_ms": summary([v[2] for v in got])}
    meta = {"date": stamp.isoformat(timespec="seconds"), "seconds": round(time.time() - started),
            "command": args.command, "profile": args.profile, "options": options,
            "tier": os.environ.get("NFSBRIDGE_TIER", "host"), "mode": mode, "reps": args.reps,
            "kernel": platform.release(), "nproc": os.cpu_count(),
            "load_start": load_start, "load_end": os.getloadavg(),
            "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip()}
    (out / "dirlease.json").write_text(json.dumps({"meta": meta, "results": results,
                                                    "samples": samples}, indent=1))
    lines = [f"namespace watch window, share profile {args.profile} {options or ''}, {args.reps} repetitions, "
             f"kernel {meta['kernel']}, {meta['tier']} tier, commit {meta['commit']}",
             f"mode: {mode or '(not logged)'}",
             "| change | breaks | after visible: median | p25-p75 | p90 | p99 | max | from call start: median | the change took: median |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, r in results.items():
        v, s, c = r["from_visible_ms"], r["from_start_ms"], r["change_ms"]
        if not v:
            lines.append(f"| {kind} | 0/{r['changes']} | none within {NO_BREAK_AFTER:.0f} s | | | | | | |")
            continue
        lines.append(f"| {kind} | {r['breaks']}/{r['changes']} | {v['median']:.2f} ms | "
                     f"{v['p25']:.2f} to {v['p75']:.2f} | {v['p90']:.2f} | {v['p99']:.2f} | {v['max']:.2f} | "
                     f"{s['median']:.2f} ms | {c['median']:.2f} ms |")
    table = "\n".join(lines)
    (out / "table.txt").write_text(table + "\n")
    print(table)
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
