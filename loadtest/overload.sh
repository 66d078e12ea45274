#!/usr/bin/env bash
# Open-loop overload test on loopback, bounded in time (about 2.5 min in full).
# Builds the release binary, makes the simulator corpus (as run_wrk.sh), starts the
# bidder, then:
#   capacity  wrk closed loop -t2 -c64 for 20 s: capacity C = wrk's Requests/sec
#   p70       ctrbid loadgen at 0.7 C for 30 s: latency below capacity
#   overload  ctrbid loadgen at 2 C for 60 s: shedding, errors, memory under overload
# and writes a Markdown report (on-time shares, 5xx, 204s and the server's shed counter,
# RSS before and after) to $REPORT and prints it.
#
#   loadtest/overload.sh
#   PHASES=capacity,p70 loadtest/overload.sh          # skip the overload phase
#   CAPACITY=9000 PHASES=p70 loadtest/overload.sh     # skip measuring capacity
#   BIN=/work/base/target/release/ctrbid loadtest/overload.sh
#
# BIN is the server under test; it is started in its own checkout (SERVE_DIR: three
# levels above BIN when that holds deploy/ctrbid.toml) with that checkout's config, so
# an older build runs with the config and model it knows. Load always comes from this
# checkout's build (LOADGEN). Other knobs: PORT, DEADLINE_MS (the bidding budget 10 ms
# plus a network allowance), TIMEOUT_MS, CAPACITY_S, P70_S, OVERLOAD_S, WARMUP_S,
# LOADGEN_THREADS, ADMIN_PORT (default PORT+1), METRICS_URL and READY_URL (default: the
# admin port, or the public port for builds without one), REPORT.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

port=${PORT:-18183}
phases=${PHASES:-capacity,p70,overload}
deadline_ms=${DEADLINE_MS:-30}
timeout_ms=${TIMEOUT_MS:-1000}
capacity_s=${CAPACITY_S:-20}
p70_s=${P70_S:-30}
overload_s=${OVERLOAD_S:-60}
warmup_s=${WARMUP_S:-2}
loadgen_threads=${LOADGEN_THREADS:-1}
bid_url=http://127.0.0.1:$port/openrtb2/bid
loadgen=${LOADGEN:-$repo/target/release/ctrbid}
bin=${BIN:-$repo/target/release/ctrbid}
# Builds with an admin port serve /metrics and /readyz there; older ones on the public port.
admin_port=${ADMIN_PORT:-$((port + 1))}
if "$bin" serve --help 2>/dev/null | grep -q -- --admin-listen; then
  admin_args=(--admin-listen "127.0.0.1:$admin_port"); status_port=$admin_port
else
  admin_args=(); status_port=$port
fi
# The corpus cycles; a build with a score cache runs without it, so overload is overload.
if "$bin" serve --help 2>/dev/null | grep -q -- --score-cache-entries; then
  admin_args+=(--score-cache-entries 0)
fi
metrics_url=${METRICS_URL:-http://127.0.0.1:$status_port/metrics}
ready_url=${READY_URL:-http://127.0.0.1:$status_port/readyz}
bin_root=$(cd "$(dirname "$bin")/../.." 2>/dev/null && pwd || true)
if [ -z "${SERVE_DIR:-}" ] && [ -f "$bin_root/deploy/ctrbid.toml" ]; then SERVE_DIR=$bin_root; fi
serve_dir=${SERVE_DIR:-$repo}
config=${CONFIG:-deploy/ctrbid.toml}
if [ -n "${BIN:-}" ] && [ "$serve_dir" != "$repo" ]; then
  report=${REPORT:-target/loadtest/overload-$(basename "$serve_dir").md}
else
  report=${REPORT:-target/loadtest/overload.md}
fi
out=${report%.md}
has() { [[ ",$phases," == *",$1,"* ]]; }

for tool in wrk jq curl; do
  command -v $tool >/dev/null || { echo "$tool is not installed: apt-get install $tool" >&2; exit 1; }
done
make --no-print-directory setup-ort build >/dev/null
[ -x "$bin" ] || { echo "BIN=$bin is not an executable" >&2; exit 1; }
mkdir -p "$out"
corpus=target/loadtest/sim-mix
if [ ! -s "$corpus/requests.jsonl" ]; then
  "$loadgen" simulate --seed 7 --impressions 20000 --out "$corpus" >/dev/null
fi

(cd "$serve_dir" && exec "$bin" serve --config "$config" --listen 127.0.0.1:$port "${admin_args[@]}") >"$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -sf "$ready_url" >/dev/null && break; sleep 0.1; done
curl -sf "$ready_url" >/dev/null || { echo "server not ready at $ready_url; see $out/serve.log" >&2; exit 1; }

rss_mib() { awk -v f="$2" '$1 == f":" { printf "%.0f", $2 / 1024 }' /proc/$1/status; }
shed() { curl -sf "$metrics_url" | sed -n 's/^ctrbid_requests_total{outcome="shed"} //p' || true; }
late() { curl -sf "$metrics_url" | sed -n 's/^ctrbid_late_answers_total //p' || true; }
rss_before=$(rss_mib $server VmRSS)

if has capacity; then
  echo "== capacity: wrk -t2 -c64 -d${capacity_s}s (after 3 s of warm-up)"
  CORPUS=$corpus/requests.jsonl wrk -t2 -c64 -d3s -s loadtest/bid.lua "http://127.0.0.1:$port" >/dev/null
  CORPUS=$corpus/requests.jsonl wrk -t2 -c64 -d"${capacity_s}s" --latency -s loadtest/bid.lua \
    "http://127.0.0.1:$port" | tee "$out/wrk.txt"
  capacity=$(awk '/^Requests\/sec:/ { print $2 }' "$out/wrk.txt")
else
  capacity=${CAPACITY:?set CAPACITY (requests/s) when PHASES has no capacity phase}
fi

# run_phase NAME RATE SECONDS: loadgen's text to the console, its JSON to $out/NAME.json,
# the server's shed counter over the phase to $out/NAME.shed.
run_phase() {
  local name=$1 rate=$2 secs=$3 shed0 shed1 late0 late1
  echo "== $name: ctrbid loadgen --rate $rate --duration-s $secs (after ${warmup_s} s of warm-up)"
  shed0=$(shed); late0=$(late)
  timeout $((secs + warmup_s + 60)) "$loadgen" loadgen --url "$bid_url" --corpus "$corpus/requests.jsonl" \
    --rate "$rate" --duration-s "$secs" --warmup-s "$warmup_s" --deadline-ms "$deadline_ms" \
    --timeout-ms "$timeout_ms" --threads "$loadgen_threads" --json "$out/$name.json" | tee "$out/$name.txt"
  shed1=$(shed); late1=$(late)
  if [ -n "$shed0" ] && [ -n "$shed1" ]; then echo $((shed1 - shed0)); else echo "n/a ($metrics_url)"; fi >"$out/$name.shed"
  if [ -n "$late0" ] && [ -n "$late1" ]; then echo $((late1 - late0)); else echo "n/a"; fi >"$out/$name.late"
}
ran=()
if has p70; then
  run_phase p70 "$(awk -v c="$capacity" 'BEGIN { printf "%.1f", 0.7 * c }')" "$p70_s"
  ran+=(p70)
fi
if has overload; then
  run_phase overload "$(awk -v c="$capacity" 'BEGIN { printf "%.1f", 2 * c }')" "$overload_s"
  ran+=(overload)
fi
rss_after=$(rss_mib $server VmRSS)
rss_peak=$(rss_mib $server VmHWM)
ready_after=$(curl -s -o /dev/null -w '%{http_code}' "$ready_url" || echo none)

# The report: one column per loadgen phase.
field() { jq -r "$2" "$out/$1.json"; }
pct() { awk -v s="$1" 'BEGIN { printf "%.2f %%", 100 * s }'; }
row() { # row LABEL JQ-EXPR [pct]
  local line="| $1 |" v
  for p in "${ran[@]}"; do
    v=$(field "$p" "$2")
    [ "${3:-}" = pct ] && v=$(pct "$v")
    line+=" $v |"
  done
  echo "$line"
}
shed_row() { # from the server's counters, not loadgen's JSON
  local line="| shed (server counter) |"
  for p in "${ran[@]}"; do line+=" $(cat "$out/$p.shed") |"; done
  echo "$line"
  line="| answered after tmax − network allowance, in process (server counter, warm-up incl.) |"
  for p in "${ran[@]}"; do line+=" $(cat "$out/$p.late") |"; done
  echo "$line"
}
{
  echo "# Overload test, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- server: \`$bin\` ($(git -C "$serve_dir" rev-parse --short HEAD 2>/dev/null || echo 'no git')), config \`$config\`, on 127.0.0.1:$port"
  echo "- corpus: $(wc -l <"$corpus/requests.jsonl") simulator requests (seed 7); load from \`$loadgen loadgen\` (open loop, latency from the intended send time, $loadgen_threads thread)"
  echo "- capacity C: $capacity req/s ($(has capacity && echo "wrk -t2 -c64, ${capacity_s} s" || echo 'given'))"
  echo "- deadline ${deadline_ms} ms, client timeout ${timeout_ms} ms, warm-up ${warmup_s} s per phase"
  echo "- server RSS: ${rss_before} MiB before, ${rss_after} MiB after, ${rss_peak} MiB peak; /readyz after: $ready_after"
  echo
  if [ ${#ran[@]} -gt 0 ]; then
    head="| |"; rule="|---|"
    for p in "${ran[@]}"; do head+=" $p |"; rule+="---:|"; done
    echo "$head"; echo "$rule"
    row "offered rate (req/s)" '.offered_rate | floor'
    row "achieved rate (req/s)" '.achieved_rate | floor'
    row "requests recorded" '.requests'
    row "200" '.counts["200"]'
    row "204" '.counts["204"]'
    shed_row
    row "4xx" '.counts["4xx"]'
    row "5xx" '.counts["5xx"]'
    row "connection errors" '.counts.errors'
    row "connections refused" '.counts.refused'
    row "client timeouts" '.counts.timeouts'
    row "unsent (no connection free)" '.counts.unsent'
    row "200/204 within ${deadline_ms} ms" '.on_time_share' pct
    row "200/204 within 100 ms" '.within[] | select(.ms == 100) | .share' pct
    row "p50 ms" '.latency_ms.all.p50'
    row "p90 ms" '.latency_ms.all.p90'
    row "p99 ms" '.latency_ms.all.p99'
    row "p99.9 ms" '.latency_ms.all.p99_9'
    row "max ms" '.latency_ms.all.max'
    row "p99 ms, 200s only" '.latency_ms["200"].p99'
    row "generator start lag p99 ms" '.start_lag_ms.p99'
  fi
} >"$report"
echo
cat "$report"
