"""scripts/bench-break-anatomy.sh: where the time of a break round trip goes, step by step, on
a `kernel oplocks = yes` share and an nfsbridge share side by side, read from the kernel's own
trace (tracefs) rather than from the client's clock.

    python benches/smb/break_anatomy.py [--probes N] [--gap SECONDS] [--out DIR]

One private smbd (the shares of scripts/bench.sh), one SMB client holding the file, and a local
opener in a process of its own (as a local program or nfsd would be). Each probe: the client
opens the file with a batch oplock or an RWH lease, the opener opens it for reading, the client
acknowledges the break it gets, the open returns. A tracefs instance of its own records, for the
smbd serving the client, the lease bridge and the opener, the system calls and signals that mark
each step:

    open -> signal             the opener's openat until the kernel signals the lease holder
    signal -> server runs      until the signalled process (smbd, or the bridge) runs
    server runs -> break sent  until smbd sends the break to the client
    client answers             until smbd reads the client's acknowledgement
    ack -> lease released      until a kernel lease is given up (F_SETLEASE F_UNLCK)
    released -> open returns   until the opener's openat returns

and whether the lease was given up before smbd sent the acknowledgement's response. Probes of
the three configurations are interleaved, with an idle gap before each (like a real local open,
which meets an idle server). Prints a table (median [p25-p75] in microseconds) and writes
DIR/anatomy.json (every probe's steps). BENCHMARKS.md ("Where a break's time goes") shows a run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import smb_bench as sb                                      # noqa: E402
import workloads as wl                                      # noqa: E402

TRACEFS = Path("/sys/kernel/tracing")
EVENTS = ["syscalls/sys_enter_openat", "syscalls/sys_exit_openat", "syscalls/sys_enter_fcntl",
          "syscalls/sys_exit_fcntl", "syscalls/sys_enter_sendmsg", "syscalls/sys_enter_recvmsg",
          "syscalls/sys_exit_epoll_wait", "signal/signal_generate", "signal/signal_deliver"]
F_SETLEASE, F_UNLCK = 0x400, 2
SMB_PORT = 445
# (label, share, batch oplock instead of an RWH lease)
CONFIGURATIONS = [("kernel oplocks, batch oplock", "koplocks", True),
                  ("nfsbridge, RWH lease", "nfsbridge", False),
                  ("nfsbridge, batch oplock", "nfsbridge", True)]
STEPS = ["open -> signal", "signal -> server runs", "server runs -> break sent", "client answers",
         "ack -> lease released", "released -> open returns", "total (trace)"]

OPENER = r"""
import os, sys, time
for line in sys.stdin:
    t0 = time.perf_counter()
    fd = os.open(line.rstrip("\n"), os.O_RDONLY)
    t1 = time.perf_counter()
    os.close(fd)
    print(t0, t1, flush=True)
"""


class Trace:
    """A tracefs instance of its own (the global buffer, and anyone else's tracing, stay as
    they are), limited to the given processes, with the monotonic clock across CPUs."""

    def __init__(self, pids: list[int]):
        if not (TRACEFS / "instances").is_dir():
            raise SystemExit(f"{TRACEFS} is not mounted (mount -t tracefs nodev {TRACEFS})")
        self.dir = TRACEFS / "instances" / f"nfsbridge-anatomy-{os.getpid()}"
        self.dir.mkdir()
        self._write("trace_clock", "mono")
        self._write("buffer_size_kb", "8192")
        self._write("set_event_pid", " ".join(map(str, pids)))
        for event in EVENTS:
            self._write(f"events/{event}/enable", "1")
        self.marker = open(self.dir / "trace_marker", "w")
        self._write("tracing_on", "1")

    def _write(self, name: str, value: str) -> None:
        (self.dir / name).write_text(value + "\n")

    def mark(self, text: str) -> None:
        self.marker.write(text + "\n")
        self.marker.flush()

    def read(self) -> str:
        self._write("tracing_on", "0")
        return (self.dir / "trace").read_text()

    def close(self) -> None:
        self.marker.close()
        self._write("tracing_on", "0")
        for event in EVENTS:
            self._write(f"events/{event}/enable", "0")
        self.dir.rmdir()


LINE = re.compile(r"^\s*.+?-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+): ([a-z_]+):?\s?(.*)$")


def on_fd(fd: int) -> re.Pattern:
    """A system call's arguments on descriptor `fd` (tracefs prints it in hex or decimal)."""
    return re.compile(rf"fd: (0x{fd:x}|{fd})\b")


def parse(text: str) -> list[tuple[str, list[tuple]]]:
    """[(probe label, [(usec, pid, event, details), ...]), ...] between the markers."""
    probes, current = [], None
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        pid, usec, event, rest = int(m[1]), float(m[2]) * 1e6, m[3], m[4]
        if event == "tracing_mark_write":
            if rest.startswith("probe "):
                current = (rest[len("probe "):], [])
            elif rest == "end" and current is not None:
                probes.append(current)
                current = None
        elif current is not None:
            current[1].append((usec, pid, event, rest))
    return probes


def steps_of(events: list[tuple], opener: int, server_pids: set[int], client_fds: dict[int, int]) -> dict | None:
    """The steps of one probe, or None when the trace misses one of them."""
    def find(start: int, match) -> int:
        return next(i for i in range(start, len(events)) if match(events[i]))

    def call(pid_ok, name: str, pattern: str | re.Pattern):
        regex = re.compile(pattern)
        return lambda e: pid_ok(e[1]) and e[2] == name and regex.search(e[3])

    try:
        i_open = find(0, call(lambda p: p == opener, "sys_openat", r"^\("))
        i_signal = find(i_open, lambda e: e[1] == opener and e[2] == "signal_generate"
                        and int(re.search(r"pid=(\d+)", e[3])[1]) in server_pids)
        signalled = int(re.search(r"pid=(\d+)", events[i_signal][3])[1])
        i_runs = find(i_signal + 1, lambda e: e[1] == signalled)
        # The smbd serving the client: the one that sends the break on its client socket.
        on_client = {pid: on_fd(fd) for pid, fd in client_fds.items()}
        i_break = find(i_runs, lambda e: e[2] == "sys_sendmsg" and e[1] in on_client
                       and on_client[e[1]].search(e[3]))
        smbd = events[i_break][1]
        i_ack = find(i_break + 1, call(lambda p: p == smbd, "sys_recvmsg", on_client[smbd]))
        i_release = None
        for i in range(i_ack, len(events)):
            usec, pid, event, rest = events[i]
            if event == "sys_fcntl" and pid in server_pids and re.search(
                    rf"cmd: (0x{F_SETLEASE:x}|{F_SETLEASE}), arg: (0x{F_UNLCK:x}|{F_UNLCK})\)", rest):
                done = next((events[j] for j in range(i + 1, len(events))
                             if events[j][1] == pid and events[j][2] == "sys_fcntl"), None)
                if done is not None and done[3].strip().endswith("-> 0x0"):
                    i_release = i
                    break
        if i_release is None:
            return None
        i_returns = find(i_release, call(lambda p: p == opener, "sys_openat", r"->"))
        i_response = next((i for i in range(i_ack + 1, len(events)) if events[i][1] == smbd
                           and events[i][2] == "sys_sendmsg" and on_client[smbd].search(events[i][3])), None)
    except (StopIteration, TypeError):
        return None
    t = [events[i][0] for i in (i_open, i_signal, i_runs, i_break, i_ack, i_release, i_returns)]
    out = {step: round(t[k + 1] - t[k], 1) for k, step in enumerate(STEPS[:-1])}
    out["total (trace)"] = round(t[-1] - t[0], 1)
    out["signalled"] = "smbd" if signalled == smbd else "lease bridge" if signalled not in client_fds else "other smbd"
    out["released before the response"] = i_response is None or i_release < i_response
    return out


def client_socket_fd(pid: int) -> int | None:
    """The descriptor of smbd `pid` that is its TCP connection on port 445."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == SMB_PORT and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    for entry in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m and m[1] in inodes:
            return int(entry)
    return None


def probe(client, path: Path, batch: bool, opener: subprocess.Popen, trace: Trace, label: str) -> float:
    """One probe; the local open's time in microseconds as the opener measured it."""
    client.pending_breaks()
    if batch:
        handle, _ = wl.open_file(client, path.name, lease=None, oplock=wl.BATCH_OPLOCK)
    else:
        handle, _ = wl.open_file(client, path.name, lease="RWH")
    trace.mark(f"probe {label}")
    try:
        opener.stdin.write(f"{path}\n")
        opener.stdin.flush()
        brk = client.wait_break(timeout=wl.BREAK_TIMEOUT)
        wl._ack(client, brk)
        t0, t1 = map(float, opener.stdout.readline().split())
    finally:
        handle.close()
        client.pending_breaks()
        trace.mark("end")
    return (t1 - t0) * 1e6


def summary(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    q = statistics.quantiles(values, n=4)
    return f"{statistics.median(values):.0f} [{q[0]:.0f}-{q[2]:.0f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=40, help="probes per configuration (default 40)")
    parser.add_argument("--gap", type=float, default=0.1, help="idle seconds before each probe (default 0.1)")
    parser.add_argument("--out", type=Path, help="results directory (default bench-results/anatomy-<UTC timestamp>)")
    parser.add_argument("--command", default="", help="the command line to record in the results")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("scripts/bench-break-anatomy.sh must run as root (smbd, tracefs)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"stopped by signal {signum}"))
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or sb.REPO / "bench-results" / stamp.strftime("anatomy-%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="nfsbridge-anatomy-", dir=os.environ.get("NFSBRIDGE_BENCH_DIR", "/var/tmp")))
    work.chmod(0o755)
    bench = sb.Bench(sb.QUICK, out, work)
    opener = subprocess.Popen([sys.executable, "-c", OPENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    trace = None
    results: dict[str, list] = {label: [] for label, _, _ in CONFIGURATIONS}
    opener_usec: dict[str, list] = {label: [] for label, _, _ in CONFIGURATIONS}
    try:
        sb.log(f"smbd with shares {', '.join(p.name for p in sb.PROFILES)} under {work}")
        bench.start()
        smbds = {share: bench.server_pids[share] for _, share, _ in CONFIGURATIONS}
        client_fds = {pid: client_socket_fd(pid) for pid in smbds.values()}
        if None in client_fds.values():
            raise SystemExit(f"cannot find the client sockets of smbd {client_fds}")
        server_pids = set(smbds.values()) | {p for p in [bench.smbd.bridge_pid()] if p is not None}
        trace = Trace([opener.pid, *server_pids])
        sb.log(f"{args.probes} probes per configuration, {args.gap} s idle before each")
        for i in range(args.probes):
            for label, share, batch in CONFIGURATIONS:
                time.sleep(args.gap)
                holder = bench.clients[share][0]
                opener_usec[label].append(probe(holder, bench.share_dirs[share] / "local-break.dat", batch, opener,
                                                trace, label))
        for label, events in parse(trace.read()):
            steps = steps_of(events, opener.pid, server_pids, client_fds)
            results[label].append(steps)
    finally:
        if trace is not None:
            trace.close()
        opener.stdin.close()
        opener.wait(timeout=10)
        bench.stop()
        shutil.rmtree(work, ignore_errors=True)
    lines = [f"break anatomy, {stamp:%Y-%m-%d %H:%M} UTC, {args.probes} probes per configuration, "
             f"{args.gap} s idle before each; microseconds, median [p25-p75]", ""]
    opener_row = "open, as the opener timed it"
    width = max(len(s) for s in STEPS + [opener_row]) + 2
    lines.append("step".ljust(width) + "".join(label.ljust(32) for label, _, _ in CONFIGURATIONS))
    for step in STEPS:
        lines.append(step.ljust(width) + "".join(
            summary([r[step] for r in results[label] if r]).ljust(32) for label, _, _ in CONFIGURATIONS))
    lines.append(opener_row.ljust(width) + "".join(
        summary(opener_usec[label]).ljust(32) for label, _, _ in CONFIGURATIONS))
    lines.append("")
    for label, _, _ in CONFIGURATIONS:
        traced = [r for r in results[label] if r]
        before = sum(1 for r in traced if r["released before the response"])
        who = sorted({r["signalled"] for r in traced})
        lines.append(f"{label}: {len(traced)}/{len(results[label])} probes traced whole; lease given up before "
                     f"the acknowledgement's response in {before}; signal went to {', '.join(who) or '-'}")
    table = "\n".join(lines)
    meta = {"date": f"{stamp:%Y-%m-%d %H:%M} UTC", "command": args.command.strip() or "scripts/bench-break-anatomy.sh",
            "probes": args.probes, "gap_seconds": args.gap, "machine": sb.machine_info()}
    (out / "anatomy.json").write_text(json.dumps({"meta": meta, "probes": results, "opener_usec": opener_usec},
                                                 indent=1) + "\n")
    (out / "table.txt").write_text(table + "\n")
    print(table)
    print(f"\nresults: {out}/anatomy.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
