#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 15), seeded with the
# captured tool output under helper/tests/fixtures. Stable toolchain:
# cargo-fuzz's `--sanitizer none` (coverage-guided libFuzzer, no ASan;
# our code has no unsafe, so panics and hangs are what there is to find).
# Prints each target's executions; exits non-zero on the first crash.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-15}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
cargo fuzz build --sanitizer none -O
seeds=(../helper/tests/fixtures/apt ../helper/tests/fixtures/os-release ../helper/tests/fixtures/rpmkeys ../helper/tests/fixtures/rpm)
for d in ../helper/tests/fixtures/dnf ../helper/tests/fixtures/yum; do
    [ -d "$d" ] && seeds+=("$d")
done
total=0
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    log=$(mktemp)
    if ! cargo fuzz run --sanitizer none -O "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=5 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $target FAILED (artifact in fuzz/artifacts/$target)" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    printf '%-16s %12s executions, 0 crashes\n' "$target" "${runs:-?}"
    total=$((total + ${runs:-0}))
    rm -f "$log"
done
echo "fuzz: all targets ran $seconds s each, $total executions, no crash"
