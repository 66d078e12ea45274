#!/usr/bin/env bash
# Closed-loop load test on loopback: builds the release binary, makes a request corpus
# with the simulator (the default catalog's seed, so its requests are targeted), starts
# the bidder with the default model, runs wrk, prints wrk's report and the server's
# own stage latencies from /metrics, and stops the server. Bounded in time.
#
#   loadtest/run_wrk.sh [scenario]      (default: sim-mix)
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-sim-mix}
dir=loadtest/scenarios/$scenario
get() { sed -n "s/^$1 *= *\([^ #]*\).*/\1/p" "$dir/scenario.toml" | tr -d '"'; }
connections=$(get connections); threads=$(get threads); duration=$(get duration_s)
seed=$(get corpus_seed); impressions=$(get corpus_impressions)
port=${PORT:-18181}
admin=${ADMIN_PORT:-18182}

command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }
make --no-print-directory setup-ort build >/dev/null
corpus=target/loadtest/$scenario
if [ ! -s "$corpus/requests.jsonl" ]; then
  target/release/ctrbid simulate --seed "$seed" --impressions "$impressions" --out "$corpus" >/dev/null
fi

# No score cache: wrk cycles the corpus, a repetition the cache would answer (see scenario repeat).
target/release/ctrbid serve --config deploy/ctrbid.toml --score-cache-entries 0 --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$admin \
  >target/loadtest/serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$admin/readyz >/dev/null && break; sleep 0.1; done

# Warm up, then measure.
CORPUS=$corpus/requests.jsonl wrk -t"$threads" -c"$connections" -d3s -s loadtest/bid.lua http://127.0.0.1:$port >/dev/null
curl -s http://127.0.0.1:$admin/metrics >target/loadtest/metrics-before.txt
echo "== wrk -t$threads -c$connections -d${duration}s, corpus $(wc -l <$corpus/requests.jsonl) requests ($scenario)"
CORPUS=$corpus/requests.jsonl wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s loadtest/bid.lua http://127.0.0.1:$port
echo "== server counters and in-process stage latencies (whole run incl. warm-up)"
curl -s http://127.0.0.1:$admin/metrics | grep -E 'requests_total|stage="total"|stage="inference"|stage="queue_wait"|batch_rows\{' 
