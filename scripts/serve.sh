#!/bin/sh
# scripts/serve.sh - the main job: build nfsbridge if needed and run a private smbd on
# 127.0.0.1 serving a demo share through it. Its config and state live under .state/serve
# (NFSBRIDGE_STATE to move it); /etc/samba and the system's Samba state are never touched,
# and the module is not installed system-wide (smbd runs in a private mount namespace).
#
#   scripts/serve.sh [start]   build if needed, start, print the smbclient command
#   scripts/serve.sh stop      stop it
#   scripts/serve.sh status
#
# Environment: NFSBRIDGE_PORT (default 445), NFSBRIDGE_DEMO_USER / NFSBRIDGE_DEMO_PASSWORD
# (default nfsbridge-demo / nfsbridge-demo), NFSBRIDGE_STATE.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
[ "$(id -u)" = 0 ] || die "scripts/serve.sh must run as root (smbd and its private mount namespace need it)"
action=${1:-start}
if [ "$action" = start ]; then
  "$REPO/scripts/build.sh" >/dev/null
fi
cd "$REPO/tests"
exec /usr/bin/python3 -m harness.serve "$action"
