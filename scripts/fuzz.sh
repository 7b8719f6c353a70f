#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/SpiritFuzz (one libFuzzer binary, the
# target named by SPIRIT_FUZZ_TARGET), each from its seeds in fuzz/corpus/.
#
#   scripts/fuzz.sh BINARY run RUNS TARGET...   RUNS inputs each (make fuzz);
#       new inputs go to out/fuzz/corpus/TARGET, kept between runs.
#   scripts/fuzz.sh BINARY check SECONDS TARGET...   replays the seeds, then
#       mutates for SECONDS each (make fuzz-check, part of make test);
#       writes nothing into the repository.
#
# A crash stops with its input saved as out/fuzz/crashes/TARGET-crash-…
# and the command that replays it. Prints execs/s for each target.
set -euo pipefail
binary=$1 mode=$2 amount=$3
shift 3
out=out/fuzz
mkdir -p "$out/crashes"
# The Swift runtime's backtracer would symbolicate every crash for seconds;
# libFuzzer and ASan print their own stack.
export SWIFT_BACKTRACE=enable=no
total=0
for target in "$@"; do
    seeds=fuzz/corpus/$target
    if [[ $mode == run ]]; then
        work=$out/corpus/$target
        limit=(-runs="$amount")
    else
        work=$(mktemp -d)
        limit=(-max_total_time="$amount")
    fi
    mkdir -p "$work"
    log=$out/$target.$mode.log
    start=$(date +%s.%N)
    status=0
    SPIRIT_FUZZ_TARGET=$target "$binary" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$out/crashes/$target-" "$work" "$seeds" >"$log" 2>&1 || status=$?
    end=$(date +%s.%N)
    [[ $mode == run ]] || rm -rf "$work"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    if [[ $status != 0 ]]; then
        echo "fuzz $target: FAILED after ${runs:-?} inputs (exit $status); the log is $log:"
        grep -E "^(==|SUMMARY|spirit-fuzz|Fatal error|artifact_prefix|Test unit written)" "$log" | head -20 || tail -20 "$log"
        crash=$(sed -n 's/^Test unit written to //p' "$log" | tail -1)
        [[ -z $crash ]] || echo "replay: SPIRIT_FUZZ_TARGET=$target $binary $crash"
        exit 1
    fi
    printf 'fuzz %-10s %9s inputs in %6ss, %6s execs/s, corpus %s seeds, no crash\n' \
        "$target" "${runs:-?}" "$seconds" "${rate:-?}" "$(ls "$seeds" | wc -l)"
    total=$((total + ${runs:-0}))
done
echo "fuzz: $total inputs in all, no crash"
