# shellcheck shell=sh
# Versions and cache paths of the multi-protocol test bed (docs/test-bed.md). Sourced after
# common.sh by scripts/setup-testbed.sh and scripts/kernel-vm.sh.
VIRTIOFSD_VERSION=${VIRTIOFSD_VERSION:-1.14.0}
VIRTIOFSD_DIR=$NFSBRIDGE_CACHE/virtiofsd/$VIRTIOFSD_VERSION     # bin/virtiofsd
# Debian's 7.3 kernel from trixie-backports: downloaded and extracted, never installed.
KERNEL_ABI=${KERNEL_ABI:-7.3.4+deb13-amd64}
KERNEL_SUITE=${KERNEL_SUITE:-trixie-backports}
KERNEL_APT=$NFSBRIDGE_CACHE/kernel/apt                            # private apt config + lists
KERNEL_DIR=$NFSBRIDGE_CACHE/kernel/$KERNEL_ABI                     # debs/, root/, VERSION
KERNEL_IMAGE=$KERNEL_DIR/root/usr/lib/modules/$KERNEL_ABI/vmlinuz
KERNEL_PKGS="linux-binary-$KERNEL_ABI linux-modules-$KERNEL_ABI linux-base-$KERNEL_ABI"
kernel_apt_opts() {
  echo "-o Dir::Etc::sourcelist=$KERNEL_APT/sources.list -o Dir::Etc::sourceparts=- -o Dir::State::Lists=$KERNEL_APT/lists -o Dir::Cache=$KERNEL_APT/cache"
}
