#!/bin/sh
# scripts/build.sh - build the nfsbridge smbd module and CLI (release), checking first that the
# Samba headers match the installed Samba.
#
# Output: target/release/libvfs_nfsbridge.so (install as <samba modules>/vfs/nfsbridge.so)
#         target/release/nfsbridge           (the CLI)
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
export PATH=$HOME/.cargo/bin:$PATH
check_headers_match
cd "$REPO"
cargo build --release --locked --workspace -q
so=target/release/libvfs_nfsbridge.so
exported=$(nm -D --defined-only "$so" | awk '{print $3}')
[ "$exported" = samba_init_module ] \
  || die "$so exports more than samba_init_module: $(echo "$exported" | tr '\n' ' ')"
echo "built $REPO/$so (installs as nfsbridge.so) and $REPO/target/release/nfsbridge"
