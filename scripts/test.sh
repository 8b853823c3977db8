#!/usr/bin/env bash
# berth's whole test suite. Run as root on Debian 12: `bash scripts/test.sh`.
# Installs its own dependencies, checks formatting and lints, runs every test (unit, integration
# with real containers, mounts, cgroups and namespaces), then checks that nothing leaked.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ci-deps.sh
export CARGO_TERM_COLOR=never RUST_BACKTRACE=1
# Tests need a subreaper-aware environment and root.
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (tests create containers, mounts, cgroups)"; exit 1; }

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --workspace --all-targets --quiet

log=$(mktemp /tmp/berth-test-log.XXXXXX)
baseline=$(mktemp /tmp/berth-test-baseline.XXXXXX)
trap 'rm -f "$log" "$baseline"' EXIT
bash scripts/leakcheck.sh snapshot "$baseline"
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final 2>&1 | tee "$log" || status=$?
else
  cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
fi
cargo test --workspace --doc --quiet >/dev/null 2>&1 || { echo "doc tests failed"; cargo test --workspace --doc; status=1; }

echo "--- leak check"
if ! bash scripts/leakcheck.sh check "$baseline"; then status=1; fi

# Closing line: the runner's counts (nextest summary or the sum of cargo test's result lines).
if grep -q "tests run:" "$log"; then
  line=$(grep "tests run:" "$log" | tail -1)
  passed=$(sed -n 's/.* \([0-9]\+\) passed.*/\1/p' <<<"$line"); passed=${passed:-0}
  failed=$(sed -n 's/.* \([0-9]\+\) failed.*/\1/p' <<<"$line"); failed=${failed:-0}
  skipped=$(sed -n 's/.* \([0-9]\+\) skipped.*/\1/p' <<<"$line"); skipped=${skipped:-0}
else
  passed=$(grep -o '[0-9]\+ passed' "$log" | awk '{s+=$1} END {print s+0}')
  failed=$(grep -o '[0-9]\+ failed' "$log" | awk '{s+=$1} END {print s+0}')
  skipped=$(grep -o '[0-9]\+ ignored' "$log" | awk '{s+=$1} END {print s+0}')
fi
[ "$status" = 0 ] || [ "$failed" != 0 ] || failed=1
echo "berth: $passed passed, $failed failed, $skipped skipped"
exit "$status"
