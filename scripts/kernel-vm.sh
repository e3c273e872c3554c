#!/bin/bash
# scripts/kernel-vm.sh [pytest args...] - the test bed's kernel tier: boots Debian's 7.3 kernel
# (downloaded by scripts/setup.sh, never installed) with virtme-ng over this machine's
# userspace, runs scripts/kernel-vm-guest.sh inside (kernel nfsd exporting an ext4 scratch disk,
# an NFSv4.2 mount, smbd with the module) and the kernel_tier tests of tests/bed (and the
# smb2.dirlease parity gate of tests/parity) there.
#
# Prints the guest's per-test results, then one line "kernel tier: N passed, N failed".
# If the VM cannot start or the guest setup fails, it says so loudly, names every test it could
# not run and counts each as failed (exit 1): the kernel tier is part of CI.
#
# Environment:
#   NFSBRIDGE_KERNEL_TIMEOUT  seconds for the whole VM run (default 1200; the full kernel tier
#                             takes about 380 s here under TCG, a bare boot-and-setup about 10 s)
#   NFSBRIDGE_KVM=1           use KVM instead of TCG (only on hosts with real VMX/SVM: this
#                             machine's /dev/kvm is PVM-only and Debian kernels die on it)
#   NFSBRIDGE_KEEP_VM_OUT=1   keep the VM's output directory (console, setup and pytest logs)
#
# scripts/kernel-vm.sh --bench DIR [dirlease_bench.py args...] boots the same VM and runs the
# directory lease bench there instead (scripts/bench-dirlease.sh --kernel-vm), results in DIR.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
. "$REPO/scripts/lib/testbed.sh"
[ "$(id -u)" = 0 ] || die "scripts/kernel-vm.sh must run as root"
PY="$NFSBRIDGE_VENV/bin/python"
TIMEOUT=${NFSBRIDGE_KERNEL_TIMEOUT:-1200}
OUT=$(mktemp -d /tmp/nfsbridge-kernel-tier.XXXXXX)
chmod 0755 "$OUT"
cleanup() {
  rm -f "$OUT/scratch.img"
  [ "${NFSBRIDGE_KEEP_VM_OUT:-0}" = 1 ] && echo "kernel tier: VM output kept in $OUT" || rm -rf "$OUT"
}
trap cleanup EXIT

# The tests this run is meant to execute, from collecting on the host with the kernel tier
# selected: these are named if the VM cannot run them.
kernel_tests() {
  (cd "$REPO/tests" && NFSBRIDGE_TIER=kernel PYTHONDONTWRITEBYTECODE=1 "$PY" -m pytest -p no:cacheprovider \
     --collect-only -q bed parity "$@" 2>/dev/null | grep '::' | sed 's|^|tests/|')
}

not_run() {
  local tests n
  tests=$(kernel_tests "$@")
  n=$(printf '%s\n' "$tests" | grep -c '::')
  cat <<EOF
################################################################################
##  KERNEL TIER DID NOT RUN: $REASON
##  These $n tests were NOT run and are counted as FAILED:
$(printf '%s\n' "$tests" | sed 's/^/##    /')
################################################################################
EOF
  [ -f "$OUT/setup.log" ] && { echo "--- guest setup log:"; cat "$OUT/setup.log"; }
  [ -f "$OUT/console.log" ] && { echo "--- last lines of the VM console:"; tail -40 "$OUT/console.log"; }
  echo "kernel tier: 0 passed, $n failed"
  exit 1
}

REASON=""
[ -f "$KERNEL_IMAGE" ] || REASON="no kernel image $KERNEL_IMAGE (run scripts/setup.sh)"
[ -x "$VIRTIOFSD_DIR/bin/virtiofsd" ] || REASON="${REASON:+$REASON; }no virtiofsd in $VIRTIOFSD_DIR (run scripts/setup.sh)"
[ -x "$NFSBRIDGE_VENV/bin/vng" ] || REASON="${REASON:+$REASON; }no virtme-ng in $NFSBRIDGE_VENV (run scripts/setup.sh)"
for tool in qemu-system-x86_64 udevadm modprobe mkfs.ext4 busybox; do
  command -v $tool >/dev/null || REASON="${REASON:+$REASON; }$tool is not installed (run scripts/setup.sh)"
done
[ -z "$REASON" ] || not_run "$@"

# The guest cannot add users (/etc is the host's): make the bed's SMB user here first.
(cd "$REPO/tests" && PYTHONDONTWRITEBYTECODE=1 "$PY" -c \
  'from harness.fixtures import TEST_USER; from harness.samba import ensure_unix_user; ensure_unix_user(TEST_USER.name)')

# A fresh ext4 scratch disk each run, formatted here (0.1 s vs seconds under TCG). Sparse;
# 8 GiB because the tests' own directories (smbd state and logs, the parity shares) live on
# it too (TMPDIR in the guest), and a full disk fails smbd's tdb writes.
truncate -s 8G "$OUT/scratch.img" && mkfs.ext4 -q -F "$OUT/scratch.img" || { REASON="cannot make the scratch disk"; not_run "$@"; }

# Modules udev would load for QEMU's q35 devices; none is needed, each costs TCG time.
BLACKLIST=kvm,kvm_amd,kvm_intel,ccp,sr_mod,cdrom,ahci,libahci,libata,iTCO_wdt,intel_pmc_bxt,psmouse
BLACKLIST=$BLACKLIST,aesni_intel,pcspkr,evdev,i2c_i801,serio_raw,lpc_ich,i2c_smbus,i6300esb,button,sg
ACCEL=--disable-kvm; ACCEL_NAME=TCG
[ "${NFSBRIDGE_KVM:-0}" = 1 ] && { ACCEL=""; ACCEL_NAME=KVM; }
export PATH=$VIRTIOFSD_DIR/bin:$NFSBRIDGE_VENV/bin:$PATH
BENCH_DIR=""
if [ "${1:-}" = --bench ]; then
  BENCH_DIR=${2:?--bench needs an output directory}
  shift 2
  set -- --bench "$@"
fi
guest_cmd="bash $REPO/scripts/kernel-vm-guest.sh $OUT"
for a in "$@"; do guest_cmd="$guest_cmd $(printf '%q' "$a")"; done

step "kernel tier: booting $KERNEL_ABI ($(cat "$KERNEL_DIR/VERSION")) under $ACCEL_NAME, timeout ${TIMEOUT}s"
t0=$(date +%s)
# The guest gets a tmpfs over /var/cache: --rodir brings back our cache (the kernel's modules,
# the test venv). Output through a pipe: QEMU reopens /proc/self/fd/{1,2}, and with a plain file they clobber
# each other. `timeout` because a failed guest can leave QEMU hanging.
# shellcheck disable=SC2086
timeout --kill-after=15 "$TIMEOUT" vng $ACCEL -r "$KERNEL_IMAGE" -m 2G --cpus 2 \
  --append "modprobe.blacklist=$BLACKLIST" \
  --rwdir "$OUT" --rodir "$NFSBRIDGE_CACHE" \
  --qemu-opts="-drive file=$OUT/scratch.img,if=none,id=scratch,format=raw,cache=unsafe -device virtio-blk-pci,drive=scratch,serial=scratch" \
  -- "$guest_cmd" </dev/null 2>&1 | cat > "$OUT/console.log"
vm_rc=${PIPESTATUS[0]}
elapsed=$(( $(date +%s) - t0 ))
grep '^\[guest' "$OUT/console.log"

if [ -n "$BENCH_DIR" ]; then
  [ -f "$OUT/bench.log" ] && cat "$OUT/bench.log"
  [ -f "$OUT/bench/table.txt" ] || die "the bench did not finish in the VM (status $vm_rc; console: $OUT/console.log)"
  mkdir -p "$BENCH_DIR" && cp -r "$OUT/bench/." "$BENCH_DIR/"
  echo "results in $BENCH_DIR"
  exit "$vm_rc"
fi

if [ ! -f "$OUT/junit.xml" ]; then
  case $vm_rc in
    124|137) REASON="the VM did not finish within ${TIMEOUT}s" ;;
    90) REASON="the guest setup (nfsd, NFSv4.2 mount) failed" ;;
    *) REASON="the VM exited with status $vm_rc after ${elapsed}s without test results" ;;
  esac
  not_run "$@"
fi

# The guest's verbose results (each line says "[kernel tier]"), without pytest's own summary
# line: the count below is the only one, so that scripts/test.sh counts these tests once.
grep -v -E '^=+ .*[0-9]+ (passed|failed|errors?|skipped|deselected)' "$OUT/pytest.log"
read -r passed failed skipped < <("$PY" - "$OUT/junit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
total = sum(int(s.get("tests", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(total - failed - skipped, failed, skipped)
EOF
)
step "kernel tier: VM run took ${elapsed}s (exit $vm_rc)"
if [ "$passed" = 0 ] && [ "$failed" = 0 ]; then
  REASON="pytest ran no kernel_tier test in the guest"
  not_run "$@"
fi
if [ "$skipped" != 0 ]; then
  echo "kernel tier: $skipped tests SKIPPED in the guest (not run, counted as failed):"
  grep -E 'SKIPPED' "$OUT/pytest.log" | sed 's/^/    /'
  failed=$((failed + skipped))
fi
echo "kernel tier: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$vm_rc" = 0 ]
