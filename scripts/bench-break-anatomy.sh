#!/bin/sh
# scripts/bench-break-anatomy.sh - where a break round trip's time goes (issue 5): a local open
# against an SMB client's batch oplock or RWH lease on a `kernel oplocks = yes` share and on an
# nfsbridge share, cut into steps (signal, server, client, release, opener) from the kernel's
# own trace (a tracefs instance of its own). Not a test: numbers depend on the machine.
#
#   scripts/bench-break-anatomy.sh [--probes N] [--gap SECONDS] [--out DIR]
#
# Prints a table (microseconds, median [p25-p75]) and writes DIR/anatomy.json and
# DIR/table.txt (default DIR: bench-results/anatomy-<UTC timestamp>). BENCHMARKS.md ("Where a
# break's time goes") shows a run. Needs tracefs (/sys/kernel/tracing) and root.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
case " $* " in
  *" -h "*|*" --help "*) sed -n '2,11p' "$0"; exit 0 ;;
esac
[ "$(id -u)" = 0 ] || die "scripts/bench-break-anatomy.sh must run as root (smbd, tracefs)"
PY="$NFSBRIDGE_VENV/bin/python"
"$PY" -c 'import smbprotocol' 2>/dev/null \
  || die "the venv $NFSBRIDGE_VENV lacks smbprotocol. Run: scripts/setup.sh"
step "building the module (release)"
"$REPO/scripts/build.sh"
step "benchmark"
exec "$PY" "$REPO/benches/smb/break_anatomy.py" --command "scripts/bench-break-anatomy.sh $*" "$@"
