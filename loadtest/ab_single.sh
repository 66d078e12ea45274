#!/usr/bin/env bash
# The single-request case with ApacheBench: one bid request, one connection, one
# request at a time (ab -c 1 -k), against the full bidder and the same binary in ceiling
# mode (parse, validate, a fixed answer), in rounds that alternate the two on fresh
# servers, so both see the same box. Nothing is ever batched with company here: this
# is a lone request's round trip through every stage, on loopback, client included.
#
#   loadtest/ab_single.sh                      # 3 rounds of 20,000 requests per side
#   ROUNDS=5 REQUESTS=50000 loadtest/ab_single.sh
#   BODY=tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json loadtest/ab_single.sh
#
# The body is, unless BODY names one, the first request of the sim-mix corpus on which
# the bidder bids with at least MIN_CANDIDATES (default 50) candidates for one imp:
# about what the load tests score per request. Writes target/loadtest/ab/report.md and ab's own output.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
requests=${REQUESTS:-20000}
port=${PORT:-18191}
admin=${ADMIN_PORT:-18192}
out=target/loadtest/ab
mkdir -p "$out"

command -v ab >/dev/null || { echo "ab is not installed: apt-get install apache2-utils" >&2; exit 1; }
make --no-print-directory setup-ort build >/dev/null
bin=target/release/ctrbid

server=
stop() { [ -n "$server" ] && { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; }; server=; }
trap stop EXIT
start() { # mode [flags]
  local mode=$1; shift
  "$bin" serve --config deploy/ctrbid.toml --mode "$mode" --score-cache-entries 0 "$@" \
    --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$admin >"$out/serve-$mode.log" 2>&1 &
  server=$!
  for _ in $(seq 200); do curl -sf http://127.0.0.1:$admin/readyz >/dev/null && return; sleep 0.1; done
  echo "the server did not get ready: $out/serve-$mode.log" >&2; exit 1
}
post() { curl -s -XPOST -H 'content-type: application/json' --data-binary @"$1" http://127.0.0.1:$port/openrtb2/bid "${@:2}"; }
status() { post "$1" -o /dev/null -w '%{http_code}'; }

body=${BODY:-}
if [ -z "$body" ]; then
  corpus=target/loadtest/sim-mix
  [ -s "$corpus/requests.jsonl" ] || "$bin" simulate --seed 7 --impressions 20000 --out "$corpus" >/dev/null
  start bid --debug-ext true
  candidates=0
  for n in $(seq 1 500); do
    sed -n "${n}p" "$corpus/requests.jsonl" >"$out/body.json"
    candidates=$(post "$out/body.json" | grep -o '"candidates":[0-9]*' | cut -d: -f2 | sort -n | tail -1)
    [ "${candidates:-0}" -ge "${MIN_CANDIDATES:-50}" ] && break
  done
  stop
  [ "${candidates:-0}" -ge "${MIN_CANDIDATES:-50}" ] || { echo "no request of $corpus with ${MIN_CANDIDATES:-50} candidates" >&2; exit 1; }
  body=$out/body.json
  what="line $n of the sim-mix corpus, $candidates candidates scored for its imp"
fi

# One ab run; prints "requests/s mean p50 p90 p99 max" (ms) and keeps ab's report.
run() { # mode round
  start "$1"
  [ "$(status "$body")" = 200 ] || { echo "no 200 for the body in mode $1" >&2; exit 1; }
  ab -q -k -c 1 -n 2000 -p "$body" -T application/json http://127.0.0.1:$port/openrtb2/bid >/dev/null # warm-up
  ab -q -k -c 1 -n "$requests" -p "$body" -T application/json http://127.0.0.1:$port/openrtb2/bid >"$out/ab-$1-$2.txt"
  stop
  local f=$out/ab-$1-$2.txt
  grep -q '^Non-2xx responses' "$f" && { echo "non-2xx answers in $f" >&2; exit 1; }
  awk '/^Requests per second/ {rps=$4} /^Time per request:.*\(mean\)$/ {mean=$4}
       /^  50%/ {p50=$2} /^  90%/ {p90=$2} /^  99%/ {p99=$2} /^ 100%/ {max=$2}
       END {print rps, mean, p50, p90, p99, max}' "$f"
}

{
  echo "# ab, one request at a time"
  echo
  echo "\`loadtest/ab_single.sh\` ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs): \`ab -k -c 1 -n $requests\` with"
  echo "$(wc -c <"$body") bytes of \`$body\` (${what:-given as BODY}), the bidder and the ceiling mode alternating on fresh servers,"
  echo "$rounds rounds, default config, no score cache. ab reports whole milliseconds for percentiles."
  echo
  echo "| round | mode | requests/s | mean ms | p50 | p90 | p99 | max |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$out/report.md"
for r in $(seq 1 "$rounds"); do
  order="bid ceiling"; [ $((r % 2)) -eq 0 ] && order="ceiling bid"
  for mode in $order; do
    read -r rps mean p50 p90 p99 max < <(run "$mode" "$r")
    echo "| $r | $mode | $rps | $mean | $p50 | $p90 | $p99 | $max |" >>"$out/report.md"
    echo "$mode $rps" >>"$out/rps.txt.$$"
  done
done
awk '{s[$1]+=$2; n[$1]++} END {b=s["bid"]/n["bid"]; c=s["ceiling"]/n["ceiling"];
     printf "\nMean requests/s: bidder %.0f, ceiling %.0f; the bidder answers a lone request at %.2fx the ceiling'"'"'s rate.\n", b, c, b/c}' \
  "$out/rps.txt.$$" >>"$out/report.md"
rm -f "$out/rps.txt.$$"
cat "$out/report.md"
