#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each), starting
# from the committed seeds. Crashes land in fuzz/artifacts/<target>/.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain the
# sanitizer flags are enabled with RUSTC_BOOTSTRAP.
#   scripts/fuzz-all.sh [seconds-per-target] [target...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(frame car dag_cbor_json stream_entry xrpc_query)
fi
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  corpus="corpus/$target"
  mkdir -p "$corpus"
  echo "== $target: ${seconds}s"
  # -rss_limit_mb: a length field that drives a huge allocation is a crash.
  cargo fuzz run --release "$target" "$corpus" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -malloc_limit_mb=256 -print_final_stats=1 2>&1 |
    grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)" || true
done
