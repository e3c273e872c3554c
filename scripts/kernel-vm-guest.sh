#!/bin/bash
# scripts/kernel-vm-guest.sh OUT [pytest args...] - runs INSIDE the kernel-tier VM (started by
# scripts/kernel-vm.sh), as root, over the host's userspace (read-only except --rwdir OUT).
# scripts/kernel-vm-guest.sh OUT --bench [dirlease_bench.py args...] - the same set-up, then the
# directory lease bench (scripts/bench-dirlease.sh --kernel-vm) instead of the tests.
#
# Brings up kernel nfsd exporting an ext4 scratch disk and an NFSv4.2 mount of it, then runs the
# test bed's kernel_tier tests with the same pytest harness as the host. Results go to OUT:
# junit.xml, pytest.log, setup.log (the bench: bench/, bench.log). Exit status: pytest's (the
# bench's), or 90 if the setup failed.
set -uo pipefail
OUT=$1; shift
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${NFSBRIDGE_VENV:-/var/cache/nfsbridge/venv}
EXP=/srv/export            # ext4 scratch disk, exported by nfsd (fsid=0)
MNT=/run/nfsmnt            # NFSv4.2 mount of localhost:/ (/mnt is read-only in the guest)
DEV=/dev/disk/by-id/virtio-scratch
T0=$(cut -d' ' -f1 /proc/uptime)
ts() { echo "[guest $(awk -v t0="$T0" '{printf "%6.2f", $1 - t0}' /proc/uptime)s] $*"; }
setup_failed() { ts "SETUP FAILED: $*"; dmesg | tail -30; exit 90; }

setup() {
  ts "kernel $(uname -r), $(nproc) cpus"
  modprobe nfsd || setup_failed "modprobe nfsd"
  modprobe nfs || setup_failed "modprobe nfs"
  modprobe virtio_blk 2>/dev/null; modprobe ext4
  for _ in $(seq 50); do [ -b $DEV ] && break; sleep 0.1; done   # udev creates the by-id link
  [ -b $DEV ] || DEV=/dev/vda
  mkdir -p $EXP $MNT
  # The disk was formatted on the host (0.1 s there, seconds under TCG).
  mount -t ext4 -o acl $DEV $EXP || setup_failed "mount $DEV"
  chmod 0755 $EXP
  mountpoint -q /proc/fs/nfsd || mount -t nfsd nfsd /proc/fs/nfsd
  mkdir -p /var/lib/nfs/v4recovery /run/rpcbind /run/rpc_pipefs /var/lib/nfs/nfsdcld
  echo "$EXP *(rw,fsid=0,no_root_squash,no_subtree_check,sync)" > /etc/exports
  echo 10 > /proc/sys/fs/lease-break-time       # bound lease-break waits (default 45 s)
  rpcbind -w 2>/dev/null || rpcbind
  exportfs -ra || setup_failed "exportfs"
  rpc.mountd --no-udp || setup_failed "rpc.mountd"
  echo 10 > /proc/fs/nfsd/nfsv4leasetime 2>/dev/null
  echo 10 > /proc/fs/nfsd/nfsv4gracetime 2>/dev/null
  # nfsdcld (client tracking over rpc_pipefs) before rpc.nfsd: with an empty tracking database
  # nfsd skips the grace period; without it OPEN gets NFS4ERR_GRACE for the grace time.
  mountpoint -q /run/rpc_pipefs || mount -t rpc_pipefs sunrpc /run/rpc_pipefs
  nfsdcld || ts "nfsdcld did not start"
  rpc.nfsd -N 3 4 || setup_failed "rpc.nfsd"
  dmesg | grep -q "skipping NFSv4 grace" || echo Y > /proc/fs/nfsd/v4_end_grace 2>/dev/null
  mount -t nfs4 -o vers=4.2 localhost:/ $MNT || setup_failed "NFSv4.2 mount"
  echo probe > $EXP/.probe && [ "$(cat $MNT/.probe)" = probe ] || setup_failed "NFS mount does not show the export"
  rm -f $EXP/.probe
  ts "nfsd exports $EXP, mounted over NFSv4.2 at $MNT"
}

( setup ) > "$OUT/setup.log" 2>&1
rc=$?
[ $rc = 0 ] || { cat "$OUT/setup.log"; exit $rc; }
ts "setup done; running ${1:-the kernel_tier tests}"

cd "$REPO" || exit 90
export NFSBRIDGE_TIER=kernel NFSBRIDGE_KERNEL_EXPORT=$EXP NFSBRIDGE_KERNEL_NFS_MOUNT=$MNT
# Test directories (smbd state, the parity gate's shares) on the ext4 scratch disk: the guest's
# /tmp takes no fanotify marks with file handles (EOPNOTSUPP), so directory leases there would
# be broken as soon as granted.
mkdir -p "$EXP/.tmp" && chmod 1777 "$EXP/.tmp" && export TMPDIR=$EXP/.tmp
# The repository and the venv are read-only here: no bytecode, no pytest cache.
if [ "${1:-}" = --bench ]; then
  shift
  PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" benches/smb/dirlease_bench.py --out "$OUT/bench" \
    "$@" > "$OUT/bench.log" 2>&1
  rc=$?
  ts "bench exited $rc"
else
  PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m pytest -p no:cacheprovider -v -rfE \
    --junitxml="$OUT/junit.xml" tests/bed tests/parity "$@" > "$OUT/pytest.log" 2>&1
  rc=$?
  ts "pytest exited $rc"
fi
umount $MNT; rpc.nfsd 0; exportfs -ua; umount $EXP
exit $rc
