#!/bin/sh
# scripts/install.sh - install nfsbridge for real (admins): the module into Samba's VFS module
# directory, the CLI into /usr/local/bin, the man page into /usr/local/share/man/man8, and the
# lease bridge's systemd unit into /etc/systemd/system (only if none is there: it holds the
# admin's list of share roots).
#
#   scripts/install.sh             build (if needed) and install
#   scripts/install.sh --uninstall remove what install put there
#
# Then add `vfs objects = nfsbridge` to a share and reload smbd (smbcontrol smbd reload-config).
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
[ "$(id -u)" = 0 ] || die "scripts/install.sh must run as root"
VFS_DIR=$(samba_lib_dir)/vfs
MODULE=$VFS_DIR/nfsbridge.so
CLI=/usr/local/bin/nfsbridge
MAN=/usr/local/share/man/man8/vfs_nfsbridge.8
UNIT=/etc/systemd/system/nfsbridge-lease-bridge.service

if [ "${1:-}" = --uninstall ]; then
  rm -f "$MODULE" "$CLI" "$MAN"
  echo "removed $MODULE $CLI $MAN ($UNIT left in place: systemctl disable --now nfsbridge-lease-bridge; rm $UNIT)"
  exit 0
fi
[ -d "$VFS_DIR" ] || die "$VFS_DIR does not exist: is Samba installed? Run scripts/setup.sh"
"$REPO/scripts/build.sh" >/dev/null
# Copy then rename, so a running smbd never loads a half-written module.
install -m 0644 "$REPO/target/release/libvfs_nfsbridge.so" "$MODULE.new" && mv -f "$MODULE.new" "$MODULE"
install -m 0755 "$REPO/target/release/nfsbridge" "$CLI.new" && mv -f "$CLI.new" "$CLI"
install -D -m 0644 "$REPO/samba-module/vfs_nfsbridge.8" "$MAN"
echo "installed $MODULE (for Samba $(samba_debian_version)), $CLI, $MAN"
if [ -e "$UNIT" ]; then
  echo "kept the existing $UNIT"
else
  install -D -m 0644 "$REPO/samba-module/nfsbridge-lease-bridge.service" "$UNIT"
  echo "installed $UNIT: list your share roots with --share in it"
fi
echo "next: add 'vfs objects = nfsbridge' to a share in smb.conf and its path to $UNIT, then:"
echo "  systemctl daemon-reload && systemctl enable --now nfsbridge-lease-bridge && smbcontrol smbd reload-config"
