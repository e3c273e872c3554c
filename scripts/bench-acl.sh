#!/bin/sh
# scripts/bench-acl.sh - ACL core throughput (ACEs per second, one thread) in release mode:
# SD binary/SDDL, NFSv4 xdr/ndr/nfs and text, NT <-> NFSv4 mapping, POSIX mirror; ACLs of 4,
# 16 and 64 ACEs. Not a test: the numbers depend on the machine and what else runs on it.
#
#   scripts/bench-acl.sh [--markdown] [--sizes 4,16,64] [--samples N] [--sample-ms MS]
#
# --markdown prints the table as docs/acl-performance.md has it. The machine, date and commit
# come first, so that a run can be pasted into the docs as it is.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
export PATH=$HOME/.cargo/bin:$PATH
cd "$REPO"
case " $* " in
  *" -h "*|*" --help "*) sed -n '2,9p' "$0"; exit 0 ;;
esac
cargo bench --locked --bench acl_throughput --no-run >/dev/null 2>&1 || cargo bench --locked --bench acl_throughput --no-run
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "machine: $(nproc) cores, ${cpu:-unknown CPU}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "command: scripts/bench-acl.sh $*"
echo
cargo bench --locked -q --bench acl_throughput -- "$@"
