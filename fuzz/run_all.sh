#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600) on stable Rust, without a
# sanitizer, and prints per target the executions libFuzzer reported and whether it
# found a crash. Logs go to fuzz/logs/<target>.log, crash inputs to fuzz/artifacts/.
#
#   fuzz/run_all.sh [SECONDS]
#   TARGETS="parse_request notice_query" fuzz/run_all.sh 600
#
# The parse_request corpus is seeded from fuzz/seeds/parse_request and, when present,
# from the real requests in ../shared/openrtb-samples (relative to the repo root).
# Exits 1 when any target crashed.
set -euo pipefail

seconds=${1:-600}
cd "$(dirname "$0")"
samples=../../shared/openrtb-samples
# TARGETS="a b" limits the run (e.g. two shells, one per core).
targets=${TARGETS:-$(cargo fuzz list)}

cargo fuzz build --sanitizer none
mkdir -p logs

for t in $targets; do
    mkdir -p "corpus/$t"
    if [ -d "seeds/$t" ]; then
        cp --no-preserve=mode seeds/"$t"/* "corpus/$t/"
    fi
done
if [ -d "$samples" ] && [ -d corpus/parse_request ]; then
    find "$samples" -type f -name '*.json' -exec cp --no-preserve=mode {} corpus/parse_request/ \;
fi

failed=0
printf '%-22s %14s %9s %10s  %s\n' target runs seconds exec/s result
for t in $targets; do
    log=logs/$t.log
    status=0
    extra=()
    # Bodies up to the server's default max_body_bytes.
    [ "$t" = parse_request ] && extra=(-max_len=262144)
    # A 2 MiB stack, as on the tokio workers where the server parses, so recursion
    # that overflows there overflows here (a bare SIGSEGV, no crash file: see README).
    (ulimit -s 2048 && exec cargo fuzz run --sanitizer none "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${extra[@]}") >"$log" 2>&1 || status=$?
    # libFuzzer ends a clean run with "Done N runs in S second(s)"; a crash skips that
    # line, so fall back to the final stats it prints either way.
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
    if [ -n "$done_line" ]; then
        runs=$(awk '{print $2}' <<<"$done_line")
        secs=$(awk '{print $5}' <<<"$done_line")
        rate=$(( secs > 0 ? runs / secs : runs ))
    else
        runs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$log" | tail -n 1)
        rate=$(awk '/^stat::average_exec_per_sec:/ {print $2}' "$log" | tail -n 1)
        secs="-"
    fi
    artifacts=$(grep -oE 'Test unit written to [^ ]+' "$log" | awk '{print $5}' | tr '\n' ' ' || true)
    if [ "$status" -eq 0 ] && [ -z "$artifacts" ]; then
        result="no crash"
    else
        signal=$(grep -oE 'exited with signal: [0-9]+ \([A-Z]+\)' "$log" | tail -n 1 || true)
        result="CRASH (exit $status${signal:+, $signal}) ${artifacts}see fuzz/$log"
        failed=1
    fi
    printf '%-22s %14s %9s %10s  %s\n' "$t" "${runs:-?}" "$secs" "${rate:-?}" "$result"
done
exit "$failed"
