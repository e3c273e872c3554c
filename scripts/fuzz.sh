#!/bin/sh
# scripts/fuzz.sh - run every decoder fuzz target (cargo fuzz, libFuzzer) for a while.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   default 60; scripts/test.sh runs it with 5
#
# Needs cargo-fuzz (scripts/setup.sh installs it). The targets are thin wrappers over
# src/fuzzing.rs: decode must never panic, and what decodes must re-encode to the same value.
# Corpora persist in fuzz/corpus/<target>; a crash stops the run with the reproducer's path.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/scripts/lib/common.sh"
export PATH=$HOME/.cargo/bin:$PATH
# cargo fuzz wants nightly flags; the project's one toolchain is stable, which allows them here.
export RUSTC_BOOTSTRAP=1
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || die "cargo-fuzz is not installed: run scripts/setup.sh"
cd "$REPO/fuzz"
targets=$(cargo fuzz list)
cargo fuzz build -O $targets >/dev/null 2>&1 || cargo fuzz build -O
ran=0
for target in $targets; do
  mkdir -p "corpus/$target"
  step "fuzz $target for ${seconds}s"
  cargo fuzz run -O "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
     -print_final_stats=1 2>&1 | grep -E 'stat::number_of_executed_units|Done|ERROR|panicked|SUMMARY' || true
  # cargo fuzz exits non-zero on a crash; the loop above hides that, so check for artifacts.
  if [ -n "$(ls "artifacts/$target" 2>/dev/null)" ]; then
    die "fuzz target $target crashed: see $REPO/fuzz/artifacts/$target/"
  fi
  ran=$((ran + 1))
done
echo "fuzz: $ran passed, 0 failed"
