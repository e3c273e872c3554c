#!/bin/bash
# scripts/test.sh - the whole test suite: Rust unit and property tests, the integration tests
# against a real smbd with the module loaded, and the smbtorture parity gate.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    skip the smbtorture parity gate (about 12 minutes) and the
#                              100k-file CLI run
#   scripts/test.sh --tier host|kernel|all   which test bed tier (docs/test-bed.md; default all):
#       host = everything on this kernel (Rust tests, integration, parity, tests/bed with Ganesha);
#       kernel = the module build and tests/bed's kernel_tier tests in a 7.3 VM (scripts/kernel-vm.sh)
#
# Needs scripts/setup.sh to have run (root: tests create users and network namespaces).
# NFSBRIDGE_KEEP_TEST_DIRS=1 keeps the test shares and smbd logs under /tmp/nfsbridge-test-*.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
export PATH=$HOME/.cargo/bin:$PATH
quick=0
tier=all
while [ $# -gt 0 ]; do
  arg=$1; shift
  case $arg in
    --quick) quick=1 ;;
    --tier=*) tier=${arg#--tier=} ;;
    --tier) tier=${1:-}; shift || true ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "unknown argument $arg (see scripts/test.sh --help)" ;;
  esac
done
case $tier in host|kernel|all) ;; *) die "--tier must be host, kernel or all (got '$tier')" ;; esac
[ "$(id -u)" = 0 ] || die "scripts/test.sh must run as root (it creates users and network namespaces)"
check_headers_match
cd "$REPO"
PY="$NFSBRIDGE_VENV/bin/python"
[ -x "$PY" ] || die "no test venv at $NFSBRIDGE_VENV: run scripts/setup.sh"

passed=0; failed=0; failed_stages=""
# Runs one stage, echoing its output, and adds its counts (parsed from the runner's own summary
# lines) to the totals. A stage that exits non-zero without reporting failures counts as one.
stage() {
  local name=$1; shift
  step "$name: $*"
  local out; out=$(mktemp)
  "$@" 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}
  # Recorded first: nothing below may lose a failed stage.
  if [ "$rc" != 0 ]; then failed_stages="$failed_stages $name"; fi
  # Counts from the runners' own summary lines only: cargo's "test result:", pytest's last
  # line, and the "<what>: N passed, N failed" lines of our scripts. smbd logs quoted in a
  # failure report are full of other "... 1234567 failed" text.
  local summaries p f
  summaries=$(grep -E '^test result: |^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected|warnings?)(, [0-9]+ [a-z]+)* in [0-9.]+s|^[A-Za-z][A-Za-z0-9 ._-]*: [0-9]+ passed, [0-9]+ failed$' "$out")
  p=$(printf '%s\n' "$summaries" | grep -oE '(^| )[0-9]+ passed' | awk '{s+=$1} END {printf "%d", s}')
  f=$(printf '%s\n' "$summaries" | grep -oE '(^| )[0-9]+ (failed|errors?)' | awk '{s+=$1} END {printf "%d", s}')
  rm -f "$out"
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  step "$name: $p passed, $f failed (exit $rc)"
}

if [ "$tier" != kernel ]; then
stage "rust unit and property tests" cargo test --locked --workspace --exclude nfsbridge-vfs
stage "bounded fuzz run (5 s per decoder)" scripts/fuzz.sh 5
fi
stage "build module and CLI" scripts/build.sh
if [ "$tier" != kernel ]; then
stage "integration tests (real smbd)" "$PY" -m pytest -q -rfE tests/integration
stage "test bed [host tier]: smbd + Ganesha + local" env NFSBRIDGE_TIER=host "$PY" -m pytest -v -rfE tests/bed
if [ $quick = 1 ]; then
  step "smbtorture parity gate and the 100k-file CLI run: skipped (--quick)"
else
  stage "nfsbridge acl check/repair -R on a 100k-file tree" \
    cargo test --locked --test cli -- --ignored hundred_thousand_files
  stage "smbtorture parity gate" "$PY" -m pytest -q -s -rfE tests/parity
fi
fi
if [ "$tier" != host ]; then
  stage "test bed [kernel tier]: 7.3 VM, kernel nfsd, NFSv4.2 mount" scripts/kernel-vm.sh
fi

if [ -n "$failed_stages" ]; then
  echo "FAILED stages:$failed_stages"
fi
echo "nfsbridge: $passed passed, $failed failed"
[ -z "$failed_stages" ]
