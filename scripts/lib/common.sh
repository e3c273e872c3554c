# shellcheck shell=sh
# Shared helpers for nfsbridge's scripts. Sourced, not run.
: "${REPO:?REPO must be set before sourcing common.sh}"
NFSBRIDGE_CACHE=${NFSBRIDGE_CACHE:-/var/cache/nfsbridge}
NFSBRIDGE_VENV=${NFSBRIDGE_VENV:-$NFSBRIDGE_CACHE/venv}
NFSBRIDGE_STATE=${NFSBRIDGE_STATE:-$REPO/.state}
export NFSBRIDGE_CACHE NFSBRIDGE_VENV NFSBRIDGE_STATE

_T0=${_T0:-$(date +%s)}
step() { echo "=== [$(( $(date +%s) - _T0 ))s] $*"; }
warn() { echo "nfsbridge: warning: $*" >&2; }
die() { echo "nfsbridge: error: $*" >&2; exit 1; }

samba_lib_dir() { echo /usr/lib/x86_64-linux-gnu/samba; }
samba_debian_version() { dpkg-query -W -f='${Version}' samba-libs 2>/dev/null; }
# 2:4.22.6+dfsg-0+deb13u1~bpo12+1 -> 4.22.6
samba_upstream_version() { echo "$1" | sed -e 's/^[0-9]*://' -e 's/[+~-].*//'; }
samba_headers_dir() { echo "$NFSBRIDGE_CACHE/samba-headers/$1"; }

# The module links against versioned private Samba symbols: headers from another build would
# compile but load wrongly or not at all. Refuse early, and say what to run.
check_headers_match() {
  _inst=$(samba_debian_version)
  [ -n "$_inst" ] || die "Samba is not installed. Run: scripts/setup.sh"
  _hdr=$(samba_headers_dir "$_inst")
  if [ ! -f "$_hdr/VERSION" ]; then
    _have=$(cat "$NFSBRIDGE_CACHE"/samba-headers/*/VERSION 2>/dev/null | tr '\n' ' ')
    die "no Samba headers for the installed samba-libs $_inst (cached: ${_have:-none}). Run: scripts/setup.sh"
  fi
  [ "$(cat "$_hdr/VERSION")" = "$_inst" ] \
    || die "Samba headers in $_hdr are for $(cat "$_hdr/VERSION") but samba-libs $_inst is installed. Run: rm -rf $_hdr && scripts/setup.sh"
}
