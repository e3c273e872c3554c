#!/bin/sh
# scripts/setup.sh - install everything nfsbridge needs on a Debian 12 machine, and build the
# Samba header bundle for the exact installed Samba, cached by its Debian version.
#
# Idempotent: a second run only checks (a few seconds). Run as root.
#
# Environment:
#   NFSBRIDGE_CACHE   where expensive things are cached (default /var/cache/nfsbridge)
#   NFSBRIDGE_SKIP_APT=1   do not touch apt (packages already installed)
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"

APT="apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends"
export DEBIAN_FRONTEND=noninteractive
# pyenv/venv pythons break waf's python detection: Debian's own tools only.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$HOME/.cargo/bin PYTHON=/usr/bin/python3 PYTHONHASHSEED=1

[ "$(id -u)" = 0 ] || die "scripts/setup.sh must run as root (it installs packages)"
grep -q 'VERSION_CODENAME=bookworm' /etc/os-release || warn "this is not Debian 12 (bookworm); continuing anyway"

# Build deps come from bookworm proper (installed before the backports step, or libc6-dev would
# drag linux-libc-dev from backports). libclang-dev is for bindgen; acl/attr for the tests;
# python3-venv for the test clients; nfs4-acl-tools for the nfs4 text interop test.
BUILD_DEPS="gcc libc6-dev pkgconf python3 perl libparse-yapp-perl libgnutls28-dev flex bison
  libacl1-dev zlib1g-dev xz-utils libclang-dev clang acl attr python3-venv ca-certificates
  util-linux procps iproute2 kmod nfs4-acl-tools"
SAMBA_PKGS="samba smbclient samba-testsuite samba-dev"

need_apt=0
for p in $BUILD_DEPS $SAMBA_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || { need_apt=1; break; }
done
if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then need_apt=1; fi
if ! grep -rqs 'deb-src' /etc/apt/sources.list.d/nfsbridge-bookworm-backports.sources /etc/apt/sources.list 2>/dev/null \
   && ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/; then need_apt=1; fi

if [ "${NFSBRIDGE_SKIP_APT:-0}" != 1 ] && [ $need_apt = 1 ]; then
  step "apt: bookworm-backports deb + deb-src sources"
  if [ ! -f /etc/apt/sources.list.d/nfsbridge-bookworm-backports.sources ]; then
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=http://deb.debian.org/debian
    printf 'Types: deb deb-src\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" > /etc/apt/sources.list.d/nfsbridge-bookworm-backports.sources
  fi
  $APT update
  step "apt: build dependencies (bookworm)"
  # shellcheck disable=SC2086
  $APT install $BUILD_DEPS
  step "apt: Samba from bookworm-backports"
  # Keep the distribution's service scripts from starting a system smbd on :445 during install;
  # nfsbridge never uses the system's Samba instance.
  # shellcheck disable=SC2086
  RUNLEVEL=1 $APT -t bookworm-backports install $SAMBA_PKGS
fi

DEBVER=$(samba_debian_version) || die "samba-libs is not installed; run scripts/setup.sh without NFSBRIDGE_SKIP_APT"
case "$DEBVER" in
  2:4.22.*) ;;
  *) die "installed Samba is $DEBVER; nfsbridge targets Samba 4.22 (SMB_VFS_INTERFACE_VERSION 50) from bookworm-backports" ;;
esac
UPSTREAM=$(samba_upstream_version "$DEBVER")

HDR=$(samba_headers_dir "$DEBVER")
if [ -f "$HDR/VERSION" ] && [ "$(cat "$HDR/VERSION")" = "$DEBVER" ] && [ -f "$HDR/samba-cflags.txt" ]; then
  step "Samba headers for $DEBVER: cached in $HDR"
else
  step "Samba headers for $DEBVER: building (about 2 minutes, once per Samba version)"
  WORK="$NFSBRIDGE_CACHE/samba-build"
  rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK"
  ORIG=samba_${UPSTREAM}+dfsg.orig.tar.xz
  # The backports .dsc may be missing on the mirror; the orig tarball is all we need, and we
  # check it against the signed Sources index ourselves.
  apt-get source --download-only "samba=$DEBVER" >apt-source.log 2>&1 || true
  [ -f "$ORIG" ] || die "could not download $ORIG (needs the deb-src bookworm-backports entry; see $WORK/apt-source.log)"
  want=$(apt-cache showsrc samba | awk -v v="$DEBVER" -v f="$ORIG" \
    '/^Package:/{ok=0} $1=="Version:"{ok=($2==v)} ok && $3==f && length($1)==64 {print $1; exit}')
  [ -n "$want" ] || die "no sha256 for $ORIG in the Sources index"
  echo "$want  $ORIG" | sha256sum -c - >/dev/null || die "checksum mismatch for $ORIG"
  tar xf "$ORIG"; cd "samba-$UPSTREAM"
  # The dfsg tarball drops the RFC 3454 tables; waf needs them to exist even for a headers-only
  # build (heimdal's wind generators). We never compile heimdal, so empty tables do.
  for t in A.1 B.1 B.2 B.3 C.1.1 C.1.2 C.2.1 C.2.2 C.3 C.4 C.5 C.6 C.7 C.8 C.9 D.1 D.2; do
    printf '   ----- Start Table %s -----\n   ----- End Table %s -----\n' $t $t
  done > third_party/heimdal/lib/wind/rfc3454.txt
  SL=$(samba_lib_dir)
  step "waf configure (Debian's paths and options)"
  ./buildtools/bin/waf configure \
    --prefix=/usr --enable-fhs --sysconfdir=/etc --localstatedir=/var \
    --libexecdir=/usr/libexec --libdir=/usr/lib/x86_64-linux-gnu --datadir=/usr/share \
    --with-modulesdir="$SL" --with-privatedir=/var/lib/samba/private \
    --with-smbpasswd-file=/etc/samba/smbpasswd --with-piddir=/run/samba --with-lockdir=/run/samba \
    --with-sockets-dir=/run/samba --with-statedir=/var/lib/samba --with-cachedir=/var/cache/samba \
    --with-cluster-support --with-socketpath=/run/ctdb/ctdbd.socket --with-logdir=/var/log/ctdb \
    --with-profiling-data --with-syslog --with-utmp --with-winbind --with-automount --with-quotas \
    --without-ad-dc --without-json --without-ldap --without-ads --without-pam --without-systemd \
    --without-libarchive --disable-cups --disable-iprint --disable-avahi --without-gpgme \
    --disable-spotlight --disable-glusterfs --disable-cephfs --without-ldb-lmdb \
    --disable-python '--with-shared-modules=!vfs_snapper' > ../configure.log 2>&1 \
    || { tail -20 ../configure.log; die "waf configure failed (log: $WORK/configure.log)"; }
  step "generating headers (param, ntstatus, PIDL)"
  TGT="VERSION,param_functions.h,param_local.h,param_global.h,s3_param_proto_h,ntstatus_generated,werror_generated,hresult_generated"
  TGT="$TGT,$(./buildtools/bin/waf list 2>/dev/null | awk '/^PIDL_/{print $1}' | paste -sd, -)"
  ./buildtools/bin/waf build -j"$(nproc)" --targets="$TGT" > ../headers.log 2>&1 \
    || { tail -20 ../headers.log; die "header generation failed (log: $WORK/headers.log)"; }
  grep -q 'SMB_VFS_INTERFACE_VERSION 50$' source3/include/vfs.h \
    || die "Samba $UPSTREAM does not have SMB_VFS_INTERFACE_VERSION 50"
  step "bundling headers into $HDR"
  rm -rf "$HDR.tmp"; mkdir -p "$HDR.tmp/src"
  { find . -path ./bin -prune -o -name '*.h' -print; find bin/default -name '*.h'; } \
    | tar -cf - -T - | tar -xf - -C "$HDR.tmp/src"
  S=$HDR/src; B=$S/bin/default
  echo "-D_SAMBA_BUILD_=4 -DHAVE_CONFIG_H=1 -D_GNU_SOURCE=1 -D_XOPEN_SOURCE_EXTENDED=1 \
-D__STDC_WANT_LIB_EXT1__=1 -D_REENTRANT -fPIC -I$B/include -I$S/source3 -I$S/source3/include \
-I$S/source3/lib -I$B/source3 -I$S/lib/replace -I$S/lib -I$S -I$B -I$S/include -I$S/libcli/util \
-I$B/libcli/util -I$S/librpc -I$S/libds/common -I$S/lib/param -I$B/lib/param -I$S/source3/param \
-I$B/source3/param -I$S/dynconfig -I$S/nsswitch -I$S/nsswitch/libwbclient -I/usr/include/tirpc" \
    | tr -s ' ' > "$HDR.tmp/samba-cflags.txt"
  echo "$DEBVER" > "$HDR.tmp/VERSION"
  rm -rf "$HDR"; mv "$HDR.tmp" "$HDR"
  cd /; rm -rf "$WORK"
fi
check_headers_match

if [ ! -x "$NFSBRIDGE_VENV/bin/python" ]; then
  step "python venv for the test clients: $NFSBRIDGE_VENV"
  /usr/bin/python3 -m venv "$NFSBRIDGE_VENV"
fi
# matplotlib and numpy: the charts and statistics of scripts/bench.sh.
if ! "$NFSBRIDGE_VENV/bin/python" -c 'import pytest, smbprotocol, nfs_rs, virtme_ng, matplotlib, numpy' 2>/dev/null; then
  "$NFSBRIDGE_VENV/bin/pip" install -q -r "$REPO/tests/requirements.txt"
fi

command -v cargo >/dev/null || die "no Rust toolchain (cargo) on PATH; install rustup's stable toolchain"
if ! command -v cargo-fuzz >/dev/null; then
  step "cargo-fuzz (for scripts/fuzz.sh and the bounded fuzz run in scripts/test.sh)"
  cargo install --locked cargo-fuzz
fi

# The multi-protocol test bed (docs/test-bed.md): host packages for both tiers, virtiofsd and the
# 7.x kernel packages for the kernel tier, each cached by version.
"$REPO/scripts/setup-testbed.sh"
step "setup done: Samba $DEBVER, headers $HDR"
