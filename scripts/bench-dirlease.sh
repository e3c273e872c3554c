#!/bin/sh
# scripts/bench-dirlease.sh - the namespace watch's window (issue 7): time from a local or NFS
# create, delete or rename in a directory to the SMB client's directory lease break, and from a
# local rename or delete of a file to the break of its RH lease's H, as distributions. One test
# bed (smbd + NFS-Ganesha in a private network namespace, docs/test-bed.md). Not a test.
#
#   scripts/bench-dirlease.sh [--kernel-vm] [--reps N] [--profile nfsbridge|plain] [--out DIR]
#                             [--option 'nfsbridge:directory delegations=no']...
#
# --kernel-vm runs it in the kernel tier's 7.3 VM (kernel nfsd, NFSv4.2 mount; directory
# delegations there), otherwise on this machine's kernel with Ganesha.
# Prints a markdown table (median, p25-p75, p90, p99, max in ms) and writes DIR/dirlease.json
# (every sample) and DIR/table.txt (default DIR: bench-results/dirlease-<UTC timestamp>).
# BENCHMARKS.md ("Directory lease window") shows a run.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
case " $* " in
  *" -h "*|*" --help "*) sed -n '2,15p' "$0"; exit 0 ;;
esac
[ "$(id -u)" = 0 ] || die "scripts/bench-dirlease.sh must run as root (smbd, Ganesha, network namespaces)"
PY="$NFSBRIDGE_VENV/bin/python"
step "building the module (release)"
"$REPO/scripts/build.sh"
step "benchmark"
if [ "${1:-}" = --kernel-vm ]; then
  shift
  # The guest writes to its own output directory; --out names where the results are copied.
  out="$REPO/bench-results/dirlease-vm-$(date -u +%Y%m%dT%H%M%SZ)"
  command="scripts/bench-dirlease.sh --kernel-vm $*"
  n=$#
  while [ "$n" -gt 0 ]; do
    a=$1; shift; n=$((n - 1))
    if [ "$a" = --out ] && [ "$n" -gt 0 ]; then out=$1; shift; n=$((n - 1)); continue; fi
    set -- "$@" "$a"
  done
  exec "$REPO/scripts/kernel-vm.sh" --bench "$out" --command "$command" "$@"
fi
exec "$PY" "$REPO/benches/smb/dirlease_bench.py" --command "scripts/bench-dirlease.sh $*" "$@"
