#!/bin/sh
# scripts/setup-testbed.sh - what the multi-protocol test bed needs (run by scripts/setup.sh).
#
# Host tier: NFS-Ganesha 5.9 (FSAL_VFS) from bookworm-backports, libnfs-utils, nfs4-acl-tools;
# nfs-rs comes with the test venv (tests/requirements.txt).
# Kernel tier: QEMU, kmod, busybox-static (virtme-ng's initramfs), udev (without udev virtme-ng falls back to the console and loses the
# exit code), nfs-kernel-server/nfs-common (their userspace runs in the guest), virtme-ng (test
# venv), virtiofsd built once with cargo, Debian's 7.3 kernel packages downloaded (never installed).
# Everything expensive is cached under $NFSBRIDGE_CACHE by version; a second run only checks.
#
#   NFSBRIDGE_SKIP_APT=1   do not touch apt for host packages (the kernel download still uses a
#                          private apt config that never changes the host)
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
. "$REPO/scripts/lib/testbed.sh"
[ "$(id -u)" = 0 ] || die "scripts/setup-testbed.sh must run as root (it installs packages)"
APT="apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends"
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=""
for p in kmod udev busybox-static libnfs-utils nfs4-acl-tools nfs-kernel-server nfs-common acl attr e2fsprogs bc \
         libcap-ng-dev libseccomp-dev; do
  installed "$p" || missing="$missing $p"
done
# From bookworm-backports: Ganesha 5.9 (bookworm has 4.3) and a QEMU that matches the qemu-utils
# that Samba's backports dependencies already brought in.
# Only the Ganesha packages are pinned; QEMU takes its dependencies (seabios, qemu-system-data)
# from backports too.
ganesha=""
for p in nfs-ganesha nfs-ganesha-vfs; do installed "$p" || ganesha="$ganesha $p/bookworm-backports"; done
qemu=""; installed qemu-system-x86 || qemu=qemu-system-x86
if [ -n "$missing$ganesha$qemu" ]; then
  [ "${NFSBRIDGE_SKIP_APT:-0}" != 1 ] || die "test bed packages missing:$missing$ganesha $qemu (run without NFSBRIDGE_SKIP_APT)"
  step "apt: test bed packages:$missing$ganesha $qemu"
  $APT update
  # RUNLEVEL=1: no service (rpcbind, nfs-kernel-server, ganesha) starts on this host during install.
  # shellcheck disable=SC2086
  [ -z "$missing" ] || RUNLEVEL=1 $APT install $missing
  # shellcheck disable=SC2086
  [ -z "$ganesha" ] || RUNLEVEL=1 $APT install $ganesha
  [ -z "$qemu" ] || RUNLEVEL=1 $APT -t bookworm-backports install $qemu
fi
ganesha_version=$(dpkg-query -W -f='${Version}' nfs-ganesha)
case "$ganesha_version" in 5.9*) ;; *) die "nfs-ganesha $ganesha_version is installed; the test bed needs 5.9 (bookworm-backports)" ;; esac

if [ -x "$VIRTIOFSD_DIR/bin/virtiofsd" ]; then
  step "virtiofsd $VIRTIOFSD_VERSION: cached in $VIRTIOFSD_DIR"
else
  command -v cargo >/dev/null || die "no cargo on PATH: needed once to build virtiofsd"
  step "virtiofsd $VIRTIOFSD_VERSION: cargo install (about 2-4 minutes, once per version)"
  build=$(mktemp -d)
  # One job: the machine is shared with other Rust builds.
  CARGO_TARGET_DIR=$build cargo install --quiet --locked -j 1 --version "$VIRTIOFSD_VERSION" \
      --root "$VIRTIOFSD_DIR.tmp" virtiofsd || { rm -rf "$build" "$VIRTIOFSD_DIR.tmp"; die "cargo install virtiofsd failed"; }
  rm -rf "$build" "$VIRTIOFSD_DIR"; mv "$VIRTIOFSD_DIR.tmp" "$VIRTIOFSD_DIR"
fi

if [ -f "$KERNEL_IMAGE" ] && [ -f "$KERNEL_DIR/VERSION" ]; then
  step "kernel $KERNEL_ABI ($(cat "$KERNEL_DIR/VERSION")): cached in $KERNEL_DIR"
else
  step "kernel $KERNEL_ABI: downloading from $KERNEL_SUITE with a private apt config (never installed)"
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=http://deb.debian.org/debian
  mkdir -p "$KERNEL_APT/lists/partial" "$KERNEL_APT/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $KERNEL_SUITE main" > "$KERNEL_APT/sources.list"
  # shellcheck disable=SC2046
  apt-get -q $(kernel_apt_opts) update >/dev/null
  rm -rf "$KERNEL_DIR.tmp"; mkdir -p "$KERNEL_DIR.tmp/debs" "$KERNEL_DIR.tmp/root"
  # shellcheck disable=SC2046,SC2086
  (cd "$KERNEL_DIR.tmp/debs" && apt-get -q $(kernel_apt_opts) download $KERNEL_PKGS) \
    || die "could not download $KERNEL_PKGS from $KERNEL_SUITE"
  for d in "$KERNEL_DIR.tmp"/debs/*.deb; do dpkg -x "$d" "$KERNEL_DIR.tmp/root"; done
  # Uncompressed modules: loading them under TCG is noticeably cheaper without in-guest xz.
  find "$KERNEL_DIR.tmp/root" -name '*.ko.xz' -print0 | xargs -0 -r -n 200 xz -d
  depmod -b "$KERNEL_DIR.tmp/root/usr" "$KERNEL_ABI"
  dpkg-deb -f "$(ls "$KERNEL_DIR.tmp"/debs/linux-binary-*.deb)" Version > "$KERNEL_DIR.tmp/VERSION"
  rm -rf "$KERNEL_DIR"; mv "$KERNEL_DIR.tmp" "$KERNEL_DIR"
  [ -f "$KERNEL_IMAGE" ] || die "no $KERNEL_IMAGE in the downloaded packages"
fi
step "test bed ready: ganesha $ganesha_version, virtiofsd $VIRTIOFSD_VERSION, kernel $KERNEL_ABI"
