#!/bin/sh
# scripts/bench.sh - nfsbridge side by side with plain Samba, `kernel oplocks = yes` and
# vfs_nfs4acl_xattr (issue 8): one private smbd in its own network namespace, four shares on one
# file system, workloads interleaved across the shares, several repetitions; then the ACL
# translation bench (benches/acl_throughput.rs). Not a test: numbers depend on the machine.
#
#   scripts/bench.sh [--quick] [--out DIR]
#
# Prints a table of ratios against plain Samba; writes DIR/results.json, latencies.json,
# table.txt and PNG charts (default DIR: bench-results/<UTC timestamp>). --quick: about two
# minutes. BENCHMARKS.md describes the method and shows a full run.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
export PATH=$HOME/.cargo/bin:$PATH
case " $* " in
  *" -h "*|*" --help "*) sed -n '2,11p' "$0"; exit 0 ;;
esac
[ "$(id -u)" = 0 ] || die "scripts/bench.sh must run as root (smbd, users, network namespaces)"
PY="$NFSBRIDGE_VENV/bin/python"
"$PY" -c 'import smbprotocol, matplotlib, numpy' 2>/dev/null \
  || die "the venv $NFSBRIDGE_VENV lacks smbprotocol/matplotlib/numpy. Run: scripts/setup.sh"
step "building the module and the ACL bench (release)"
"$REPO/scripts/build.sh"
cd "$REPO"
cargo bench --locked --bench acl_throughput --no-run >/dev/null 2>&1 || cargo bench --locked --bench acl_throughput --no-run
step "benchmark"
exec "$PY" "$REPO/benches/smb/smb_bench.py" --command "scripts/bench.sh $*" "$@"
