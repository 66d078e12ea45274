#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600) on stable Rust, without a
# sanitizer, and prints per target the executions libFuzzer reported and whether it
# found a crash. Logs go to fuzz/logs/<target>.log, crash inputs to fuzz/artifacts/.
#
#   fuzz/run_all.sh [SECONDS]
#   TARGETS="parse_request notice_query" fuzz/run_all.sh 600
#
# Every target that takes a request body (parse_request, parse_at_offset,
# validate_and_extract) is seeded with every request the project has: the Prebid
# samples committed in tests/fixtures/openrtb/prebid, fuzz/seeds/parse_request, the
# saved regression inputs in tests/fixtures/fuzz-regressions, requests from
# `ctrbid simulate` (fixed seed, written to corpus/.sim), and ../shared/openrtb-samples
# when present. parse_at_offset gets each behind 0, 67 and 100 bytes of whitespace (its
# first byte, see fuzz_targets/parse_at_offset.rs). notice_query starts from
# seeds/notice_query; response_roundtrip takes only structured input.
# The request targets get the dictionary openrtb.dict.
# Exits 1 when any target crashed.
set -euo pipefail

seconds=${1:-600}
cd "$(dirname "$0")"
samples=../../shared/openrtb-samples
# TARGETS="a b" limits the run (e.g. two shells, one per core).
targets=${TARGETS:-$(cargo fuzz list)}
body_targets=" parse_request parse_at_offset validate_and_extract "

cargo fuzz build --sanitizer none
mkdir -p logs

# All request bodies, one file each, in corpus/.requests.
requests=corpus/.requests
rm -rf "$requests" corpus/.sim
mkdir -p "$requests" corpus/.sim
# CTRBID=path/to/ctrbid uses that binary for `simulate` instead of building one.
if [ -n "${CTRBID:-}" ]; then
    "$CTRBID" simulate --seed 26 --impressions 400 --out corpus/.sim >/dev/null
else
    (cd .. && cargo run --release --quiet -- simulate --seed 26 --impressions 400 --out fuzz/corpus/.sim >/dev/null)
fi
split -l 1 -d -a 4 corpus/.sim/requests.jsonl "$requests/sim-"
cp --no-preserve=mode ../tests/fixtures/openrtb/prebid/*.json seeds/parse_request/* "$requests/"
for f in ../tests/fixtures/fuzz-regressions/parse_request-*; do
    cp --no-preserve=mode "$f" "$requests/regression-${f##*/}"
done
if [ -d "$samples" ]; then
    find "$samples" -type f -name '*.json' -exec cp --no-preserve=mode {} "$requests/" \;
fi

for t in $targets; do
    mkdir -p "corpus/$t"
    if [ -d "seeds/$t" ] && [ "$t" != parse_request ]; then
        cp --no-preserve=mode seeds/"$t"/* "corpus/$t/"
    fi
    case "$t" in
    parse_request | validate_and_extract)
        cp "$requests"/* "corpus/$t/"
        ;;
    parse_at_offset)
        for f in "$requests"/*; do
            for offset in '\000' '\103' '\344'; do
                { printf "$offset"; cat "$f"; } >"corpus/$t/${f##*/}-$offset"
            done
        done
        ;;
    esac
done

failed=0
printf '%-22s %14s %9s %10s  %s\n' target runs seconds exec/s result
for t in $targets; do
    log=logs/$t.log
    status=0
    extra=()
    # Bodies up to the server's default max_body_bytes, and the dictionary.
    case "$body_targets" in *" $t "*) extra=(-max_len=262144 -dict=openrtb.dict) ;; esac
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
