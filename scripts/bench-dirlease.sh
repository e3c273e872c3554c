#!/bin/sh
# scripts/bench-dirlease.sh - the namespace watch's window (issue 7): time from a local or NFS
# create, delete or rename in a directory to the SMB client's directory lease break, and from a
# local rename or delete of a file to the break of its RH lease's H, as distributions. One test
# bed (smbd + NFS-Ganesha in a private network namespace, docs/test-bed.md). Not a test.
#
#   scripts/bench-dirlease.sh [--reps N] [--profile nfsbridge|plain] [--out DIR]
#
# Prints a markdown table (median, p25-p75, p90, p99, max in ms) and writes DIR/dirlease.json
# (every sample) and DIR/table.txt (default DIR: bench-results/dirlease-<UTC timestamp>).
# BENCHMARKS.md ("Directory lease window") shows a run.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
case " $* " in
  *" -h "*|*" --help "*) sed -n '2,11p' "$0"; exit 0 ;;
esac
[ "$(id -u)" = 0 ] || die "scripts/bench-dirlease.sh must run as root (smbd, Ganesha, network namespaces)"
PY="$NFSBRIDGE_VENV/bin/python"
step "building the module (release)"
"$REPO/scripts/build.sh"
step "benchmark"
exec "$PY" "$REPO/benches/smb/dirlease_bench.py" --command "scripts/bench-dirlease.sh $*" "$@"
