#!/usr/bin/env bash
# Open-loop overload test on loopback (issue 28), bounded in time: about 5 min in full.
# Makes the simulator corpus (as run_wrk.sh), has loadgen send it with every tmax set to
# TMAX_MS (100; `--tmax-ms`), starts the bidder, then:
#   capacity  C = the highest sustainable rate: client p99 <= 10 ms, shed <= 1 %, no error.
#             wrk closed loop (10 s) gives a starting point; then open-loop `ctrbid loadgen`
#             steps of 2 s warm-up + 8 s: up x1.5 while they pass, down x0.5 while they
#             fail, then bisection; at most 7 steps and 120 s (about 1.5 min with wrk).
#   p70       loadgen at 0.7 C for 30 s: latency and shedding below capacity
#   x2        loadgen at 2 C for 60 s: answers, errors, bids per second, memory
#   x4        one loadgen run of two phases on the same connections (`--phases`): 4 C for
#             30 s, then 0.5 C for 5 s from the instant the overload ends, reported in 1 s
#             windows by intended send time (`--window-ms`): how soon answers are normal
#             again (p99 <= 10 ms, no error, shed <= 0.1 %)
# and writes a Markdown report (per phase: on-time share, p50/p99, errors, bids/s against
# C, the server's shed counter, RSS; issue 28's targets met or not) to $REPORT and
# prints it.
#
# LAYOUT=split (the default) is the fair one: the server on CPU 0 (SERVER_CPUS) with one
# tokio worker and one inference thread, what it picks itself on one CPU, and the load
# generator on CPU 1 (GEN_CPUS: wrk -t1, loadgen --threads 1, and this script's curl and
# jq); it needs 2 CPUs. LAYOUT=shared is the old run: both on every CPU, the server's
# config picks its threads, wrk -t2. LAYOUT=both runs split, then shared.
#
#   loadtest/overload.sh                                    # split: target/loadtest/overload.md
#   LAYOUT=shared loadtest/overload.sh                      # target/loadtest/overload-shared.md
#   LAYOUT=both nice loadtest/overload.sh                   # both reports, split first
#   PHASES=capacity,p70 loadtest/overload.sh                # skip the overload phases
#   CAPACITY=9000 PHASES=p70 loadtest/overload.sh           # C given: no search
#   CAPACITY_START=6000 loadtest/overload.sh                # search from 6000/s, no wrk
#   BIN=/work/base/target/release/ctrbid loadtest/overload.sh
#   LAYOUT=shared TMAX_MS=keep DEADLINE_MS=30 CAPACITY=<wrk's req/s> PHASES=p70,x2 \
#     loadtest/overload.sh                                  # the run before issue 28
#   BUILD=0 CAPACITY_S=3 SEARCH_S=2 SEARCH_WARMUP_S=1 SEARCH_STEPS=3 P70_S=3 \
#     OVERLOAD_S=3 X4_S=3 RECOVERY_WINDOWS=3 WARMUP_S=1 loadtest/overload.sh   # smoke, ~1 min
#
# BIN is the server under test; it is started in its own checkout (SERVE_DIR: three
# levels above BIN when that holds deploy/ctrbid.toml) with that checkout's config, so
# an older build runs with the config and model it knows. Load always comes from this
# checkout's build (LOADGEN). Knobs: PHASES (capacity,p70,x2,x4; overload = x2),
# CAPACITY, CAPACITY_START, CAPACITY_S (wrk), SEARCH_S, SEARCH_WARMUP_S, SEARCH_STEPS,
# SEARCH_BUDGET_S, SEARCH_TOL, SEARCH_UP, SEARCH_DOWN, CAPACITY_MAX_SHED, SLO_P99_MS,
# P70_S, OVERLOAD_S (2 C), X4_S, RECOVERY_RATE (x C), RECOVERY_WINDOW_S,
# RECOVERY_WINDOWS, RECOVERY_MAX_SHED, RECOVERY_TARGET_S, RSS_GROWTH_MAX, WARMUP_S,
# TMAX_MS (keep: the corpus's own; wrk sends the corpus's own in any case, its figure
# being only the search's start), DEADLINE_MS (loadgen's on time, = TMAX_MS),
# TIMEOUT_MS, LOADGEN_THREADS, LOADGEN_MAX_CONNECTIONS (512), WRK_THREADS,
# WRK_CONNECTIONS, SERVER_CPUS, GEN_CPUS, SERVER_WORKERS and INFERENCE_THREADS (split),
# SERVER_ARGS (more serve flags), BUILD=0 (no cargo build), PYTHON, PORT, ADMIN_PORT (default PORT+1), METRICS_URL, READY_URL,
# HEALTH_URL (default: the admin port, or the public port for builds without one), REPORT.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
self=$repo/loadtest/overload.sh

layout=${LAYOUT:-split}
case $layout in
  split | shared) ;;
  both)
    env LAYOUT=split "$self"
    if [ -n "${REPORT:-}" ]; then export REPORT=${REPORT%.md}-shared.md; fi
    LAYOUT=shared exec "$self"
    ;;
  *) echo "LAYOUT=$layout: split, shared or both" >&2; exit 2 ;;
esac

port=${PORT:-18183}
phases=,${PHASES:-capacity,p70,x2,x4},
phases=${phases//,overload,/,x2,}
tmax_ms=${TMAX_MS:-100}
deadline_ms=${DEADLINE_MS:-$([ "$tmax_ms" = keep ] && echo 100 || echo "$tmax_ms")}
slo_p99_ms=${SLO_P99_MS:-10}
timeout_ms=${TIMEOUT_MS:-1000}
capacity_s=${CAPACITY_S:-10}
search_s=${SEARCH_S:-8}
search_warmup_s=${SEARCH_WARMUP_S:-2}
search_steps=${SEARCH_STEPS:-7}
search_budget_s=${SEARCH_BUDGET_S:-120}
p70_s=${P70_S:-30}
overload_s=${OVERLOAD_S:-60}
x4_s=${X4_S:-30}
recovery_rate=${RECOVERY_RATE:-0.5}
recovery_window_s=${RECOVERY_WINDOW_S:-1}
recovery_windows=${RECOVERY_WINDOWS:-5}
warmup_s=${WARMUP_S:-2}
loadgen_threads=${LOADGEN_THREADS:-1}
wrk_connections=${WRK_CONNECTIONS:-64}
server_cpus=${SERVER_CPUS:-0}
gen_cpus=${GEN_CPUS:-1}
python=${PYTHON:-python3}
# The time loadgen takes from its start to its first request (reading the corpus and
# setting tmax in each body: about 0.06 s for the 13.6 MB corpus).
loadgen_lead_s=0.07
bid_url=http://127.0.0.1:$port/openrtb2/bid
loadgen=${LOADGEN:-$repo/target/release/ctrbid}
bin=${BIN:-$repo/target/release/ctrbid}
helper=$repo/loadtest/overload.py
has() { [[ $phases == *",$1,"* ]]; }

# The layout: who runs where.
nproc=$(nproc)
if [ "$layout" = split ]; then
  if [ "$nproc" -lt 2 ]; then
    echo "LAYOUT=split puts the server on one CPU and the load generator on another, but only $nproc CPU is available here (nproc): run LAYOUT=shared" >&2
    exit 1
  fi
  command -v taskset >/dev/null || { echo "taskset is not installed: apt-get install util-linux" >&2; exit 1; }
  for cpus in "$server_cpus" "$gen_cpus"; do
    taskset -c "$cpus" true 2>/dev/null || { echo "CPU list $cpus is not usable here (taskset -c $cpus; nproc: $nproc)" >&2; exit 1; }
  done
  [ "$server_cpus" != "$gen_cpus" ] || { echo "SERVER_CPUS and GEN_CPUS are both $server_cpus: the split layout needs them apart" >&2; exit 1; }
  server_pin=(taskset -c "$server_cpus")
  gen_pin=(taskset -c "$gen_cpus")
  wrk_threads=${WRK_THREADS:-1}
else
  server_pin=()
  gen_pin=()
  wrk_threads=${WRK_THREADS:-2}
fi

# Builds with an admin port serve /metrics and /readyz there; older ones on the public port.
admin_port=${ADMIN_PORT:-$((port + 1))}
serve_help=$("$bin" serve --help 2>/dev/null || true)
serve_args=()
if grep -q -- --admin-listen <<<"$serve_help"; then
  serve_args+=(--admin-listen "127.0.0.1:$admin_port"); status_port=$admin_port
else
  status_port=$port
fi
# The corpus cycles; a build with a score cache runs without it, so overload is overload.
if grep -q -- --score-cache-entries <<<"$serve_help"; then serve_args+=(--score-cache-entries 0); fi
threads_note="threads from its config"
if [ "$layout" = split ]; then
  threads_note=""
  if grep -q -- --workers <<<"$serve_help"; then
    serve_args+=(--workers "${SERVER_WORKERS:-1}"); threads_note="--workers ${SERVER_WORKERS:-1}"
  fi
  if grep -q -- --inference-threads <<<"$serve_help"; then
    serve_args+=(--inference-threads "${INFERENCE_THREADS:-1}"); threads_note+=" --inference-threads ${INFERENCE_THREADS:-1}"
  fi
  threads_note=${threads_note:-"threads from its config (no --workers flag)"}
fi
if [ -n "${SERVER_ARGS:-}" ]; then
  read -ra extra <<<"$SERVER_ARGS"
  serve_args+=("${extra[@]}"); threads_note+=" $SERVER_ARGS"
fi
metrics_url=${METRICS_URL:-http://127.0.0.1:$status_port/metrics}
ready_url=${READY_URL:-http://127.0.0.1:$status_port/readyz}
health_url=${HEALTH_URL:-http://127.0.0.1:$status_port/healthz}
bin_root=$(cd "$(dirname "$bin")/../.." 2>/dev/null && pwd) || bin_root=
if [ -z "${SERVE_DIR:-}" ] && [ -f "$bin_root/deploy/ctrbid.toml" ]; then SERVE_DIR=$bin_root; fi
serve_dir=${SERVE_DIR:-$repo}
config=${CONFIG:-deploy/ctrbid.toml}
suffix=
if [ "$layout" = shared ]; then suffix=-shared; fi
if [ -n "${BIN:-}" ] && [ "$serve_dir" != "$repo" ]; then
  report=${REPORT:-target/loadtest/overload-$(basename "$serve_dir")$suffix.md}
else
  report=${REPORT:-target/loadtest/overload$suffix.md}
fi
out=${report%.md}

needs=(jq curl "$python")
if has capacity && [ -z "${CAPACITY:-}" ] && [ -z "${CAPACITY_START:-}" ]; then needs+=(wrk); fi
for tool in "${needs[@]}"; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
if [ "${BUILD:-1}" = 0 ]; then
  make --no-print-directory setup-ort >/dev/null
else
  make --no-print-directory setup-ort build >/dev/null
fi
[ -x "$bin" ] || { echo "BIN=$bin is not an executable" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
corpus=target/loadtest/sim-mix
if [ ! -s "$corpus/requests.jsonl" ]; then
  "$loadgen" simulate --seed 7 --impressions 20000 --out "$corpus" >/dev/null
fi
corpus_file=$corpus/requests.jsonl
# Every request with the same tmax (the simulator draws 100 to 300 ms): loadgen sets it
# in each body when it loads the corpus.
tmax_flag=()
if [ "$tmax_ms" != keep ]; then tmax_flag=(--tmax-ms "$tmax_ms"); fi
# From here on, in the split layout, this script and what it starts (curl, jq, sleep)
# run on the generator's CPU; the server is started on its own.
if [ "$layout" = split ]; then taskset -pc "$gen_cpus" $$ >/dev/null; fi

cat >"$out/params.json" <<EOF
{"tmax_ms": $deadline_ms, "slo_p99_ms": $slo_p99_ms,
 "search_s": $search_s, "search_warmup_s": $search_warmup_s, "search_steps": $search_steps,
 "search_budget_s": $search_budget_s, "search_tol": ${SEARCH_TOL:-0.05},
 "search_up": ${SEARCH_UP:-1.5}, "search_down": ${SEARCH_DOWN:-0.5},
 "capacity_max_shed": ${CAPACITY_MAX_SHED:-0.01}, "search_start": ${CAPACITY_START:-0},
 "recovery_rate": $recovery_rate, "recovery_window_s": $recovery_window_s,
 "recovery_max_shed": ${RECOVERY_MAX_SHED:-0.001}, "recovery_target_s": ${RECOVERY_TARGET_S:-2},
 "rss_growth_max": ${RSS_GROWTH_MAX:-0.1}}
EOF
jq -e . "$out/params.json" >/dev/null || { echo "a knob is not a number: $out/params.json" >&2; exit 2; }
load_start=$(cut -d' ' -f1 /proc/loadavg)

(cd "$serve_dir" && exec "${server_pin[@]}" "$bin" serve --config "$config" --listen "127.0.0.1:$port" "${serve_args[@]}") >"$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -sf "$ready_url" >/dev/null && break; sleep 0.1; done
curl -sf "$ready_url" >/dev/null || { echo "server not ready at $ready_url; see $out/serve.log" >&2; exit 1; }
# Its threads by name, and the CPUs they may run on.
server_threads=$(for t in "/proc/$server/task/"*; do
  echo "$(cat "$t/comm") on CPU $(taskset -pc "${t##*/}" 2>/dev/null | awk '{ print $NF }')"
done | sort | uniq -c | awk '{ $1 = $1 "x"; print }' | paste -sd';' - | sed 's/;/; /g')
echo "== server pid $server ($layout layout): $server_threads"

now() { echo "$EPOCHREALTIME"; }
# sleep_until EPOCH-SECONDS
sleep_until() { sleep "$(awk -v t="$1" -v n="$EPOCHREALTIME" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')"; }
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }
times() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a * b }'; }
scrape() { curl -sf -m 2 "$metrics_url" >"$1" 2>/dev/null || : >"$1"; }
rss_mib() { awk '$1 == "VmRSS:" { printf "%.0f", $2 / 1024 }' "/proc/$server/status" 2>/dev/null || echo null; }
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$server/stat" 2>/dev/null || echo null; }
code() { curl -s -m 2 -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true; }
alive() { kill -0 "$server" 2>/dev/null; }

# run_loadgen NAME SECONDS WARMUP LOAD-FLAGS..: runs the generator for SECONDS (every
# phase) after WARMUP, with LOAD-FLAGS (--rate R --duration-s S, or --phases ..), its JSON
# to $out/NAME.json.
run_loadgen() {
  local name=$1 secs=$2 warm=$3
  shift 3
  timeout "$(awk -v s="$secs" -v w="$warm" -v t="$timeout_ms" 'BEGIN { printf "%d", s + w + t / 1000 + 30 }')" \
    "${gen_pin[@]}" "$loadgen" loadgen --url "$bid_url" --corpus "$corpus_file" "${tmax_flag[@]}" "$@" \
    --warmup-s "$warm" --deadline-ms "$deadline_ms" --timeout-ms "$timeout_ms" \
    --threads "$loadgen_threads" --max-connections "${LOADGEN_MAX_CONNECTIONS:-512}" --json "$out/$name.json"
}

# phase_begin NAME / phase_end NAME [LOAD_END]: the server's RSS (sampled every 0.25 s to
# $out/NAME.rss), CPU time, metrics (NAME.m0 .. NAME.m2) and liveness around a phase.
phase_begin() {
  p_rss0=$(rss_mib); p_cpu0=$(cpu_ticks); p_t0=$(now)
  scrape "$out/$1.m0"
  (while alive; do
    awk -v t="$EPOCHREALTIME" '$1 == "VmRSS:" { print t, $2 }' "/proc/$server/status" 2>/dev/null || true
    sleep 0.25
  done) >"$out/$1.rss" &
  p_sampler=$!
}
phase_end() {
  local cpu1 wall
  scrape "$out/$1.m2"
  cpu1=$(cpu_ticks); wall=$(awk -v a="$p_t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  kill "$p_sampler" 2>/dev/null || true; wait "$p_sampler" 2>/dev/null || true
  cat >"$out/$1.server.json" <<EOF
{"rss_before_mib": $p_rss0, "rss_after_mib": $(rss_mib), "cpu_ticks0": $p_cpu0, "cpu_ticks1": $cpu1,
 "clk_tck": $(getconf CLK_TCK), "wall_s": $wall, "load_end": ${2:-null},
 "alive": $(alive && echo true || echo false), "healthz": "$(code "$health_url")", "readyz": "$(code "$ready_url")"}
EOF
}

# run_phase NAME RATE SECONDS WARMUP: loadgen's text to the console and $out/NAME.txt.
run_phase() {
  local name=$1 rate=$2 secs=$3 warm=$4 mid
  echo "== $name: ctrbid loadgen --rate $rate --duration-s $secs (after $warm s of warm-up)"
  phase_begin "$name"
  (sleep "$(add "$warm" "$loadgen_lead_s")"; scrape "$out/$name.m1") &
  mid=$!
  run_loadgen "$name" "$secs" "$warm" --rate "$rate" --duration-s "$secs" 2>"$out/$name.err" | tee "$out/$name.txt" || true
  wait "$mid" || true
  phase_end "$name"
}

# Capacity: wrk's closed-loop figure as the starting point, then the open-loop search.
capacity=${CAPACITY:-}
capacity_source="given: CAPACITY"
wrk_rps=null; wrk_p99=null; search_wall=null
if has capacity && [ -z "$capacity" ]; then
  start=${CAPACITY_START:-}
  if [ -z "$start" ]; then
    echo "== capacity: wrk -t$wrk_threads -c$wrk_connections -d${capacity_s}s (after 3 s of warm-up): the search's starting point"
    CORPUS=$corpus_file "${gen_pin[@]}" wrk -t"$wrk_threads" -c"$wrk_connections" -d3s -s loadtest/bid.lua "http://127.0.0.1:$port" >/dev/null
    CORPUS=$corpus_file "${gen_pin[@]}" wrk -t"$wrk_threads" -c"$wrk_connections" -d"${capacity_s}s" --latency \
      -s loadtest/bid.lua "http://127.0.0.1:$port" | tee "$out/wrk.txt"
    start=$(awk '/^Requests\/sec:/ { print $2 }' "$out/wrk.txt")
    wrk_rps=$start
    wrk_p99=\"$(awk '$1 == "99%" { print $2 }' "$out/wrk.txt")\"
    capacity_source="the open-loop search from wrk's closed-loop figure"
  else
    capacity_source="the open-loop search from CAPACITY_START=$start"
  fi
  jq --argjson s "$start" '.search_start = $s' "$out/params.json" >"$out/params.tmp" && mv "$out/params.tmp" "$out/params.json"
  step_cost=$(awk -v s="$search_s" -v w="$search_warmup_s" -v t="$timeout_ms" 'BEGIN { print s + w + t / 1000 + 1 }')
  echo "== capacity search: at most $search_steps steps of ${search_warmup_s} + ${search_s} s, at most ${search_budget_s} s"
  t_search=$(now)
  rate=$("$python" "$helper" next "$out")
  n=0
  while [ -n "$rate" ]; do
    left=$(awk -v t0="$t_search" -v n="$EPOCHREALTIME" -v b="$search_budget_s" -v c="$step_cost" 'BEGIN { print ((n - t0 + c <= b) ? 1 : 0) }')
    if [ "$left" = 0 ]; then echo "== capacity search: out of its ${search_budget_s} s budget"; break; fi
    n=$((n + 1))
    run_phase "search-$n" "$rate" "$search_s" "$search_warmup_s" >"$out/search-$n.log" 2>&1
    alive || { echo "the server died during the capacity search; see $out/serve.log" >&2; break; }
    rate=$("$python" "$helper" next "$out")
    sleep 1 # let a backlog from a failed step drain
  done
  search_wall=$(awk -v t0="$t_search" -v n="$EPOCHREALTIME" 'BEGIN { printf "%.0f", n - t0 }')
  capacity=$("$python" "$helper" capacity "$out")
  if [ -n "$capacity" ]; then echo "== capacity C = $capacity req/s ($n steps, $search_wall s)"
  else echo "== capacity search: no sustainable rate in $n steps (see $out/search-*.txt); the phases do not run" >&2; fi
elif [ -z "$capacity" ]; then
  echo "set CAPACITY (requests/s) when PHASES has no capacity phase" >&2; exit 1
fi

# x4: one loadgen run of 4 C, then RECOVERY_RATE x C from the instant 4 C ends, on the
# same connections, the recovery in windows; the server's metrics at each window's start.
run_x4() {
  local rate=$1 rrate=$2 lg t_launch t_end k mid end_cpu=null end_rss=null end_t rec_s window_ms
  rec_s=$(awk -v n="$recovery_windows" -v w="$recovery_window_s" 'BEGIN { print n * w }')
  window_ms=$(awk -v w="$recovery_window_s" 'BEGIN { printf "%d", w * 1000 + 0.5 }')
  echo "== x4: ctrbid loadgen --phases $rate:$x4_s,$rrate:$rec_s --window-ms $window_ms (after $warmup_s s of warm-up)"
  phase_begin x4
  (sleep "$(add "$warmup_s" "$loadgen_lead_s")"; scrape "$out/x4.m1") &
  mid=$!
  t_launch=$(now)
  run_loadgen x4 "$(add "$x4_s" "$rec_s")" "$warmup_s" --phases "$rate:$x4_s,$rrate:$rec_s" --window-ms "$window_ms" \
    >"$out/x4.txt" 2>"$out/x4.err" &
  lg=$!
  t_end=$(add "$t_launch" "$(add "$loadgen_lead_s" "$(add "$warmup_s" "$x4_s")")")
  for ((k = 0; k <= recovery_windows; k++)); do
    sleep_until "$(add "$t_end" "$(awk -v k="$k" -v w="$recovery_window_s" 'BEGIN { print k * w }')")"
    scrape "$out/rec-$k.m0"
    # The 4 C phase's own figures end here, where its load ends.
    if [ "$k" = 0 ]; then end_cpu=$(cpu_ticks); end_rss=$(rss_mib); end_t=$(now); fi
  done
  wait "$lg" || true
  wait "$mid" || true
  cat "$out/x4.txt"
  phase_end x4 "$t_end"
  jq --argjson cpu "$end_cpu" --argjson rss "$end_rss" --argjson wall "$(awk -v a="$p_t0" -v b="$end_t" 'BEGIN { printf "%.3f", b - a }')" \
    '.rss_after_recovery_mib = .rss_after_mib | .rss_after_mib = $rss | .cpu_ticks1 = $cpu | .wall_s = $wall' \
    "$out/x4.server.json" >"$out/x4.server.tmp" && mv "$out/x4.server.tmp" "$out/x4.server.json"
}

ran=()
secs_json="{}"
crashed=
if [ -n "$capacity" ]; then
  for p in p70 x2 x4; do
    has $p || continue
    if ! alive; then crashed=1; echo "the server is gone; see $out/serve.log" >&2; break; fi
    case $p in
      p70) run_phase p70 "$(times 0.7 "$capacity")" "$p70_s" "$warmup_s"; secs=$p70_s ;;
      x2) run_phase x2 "$(times 2 "$capacity")" "$overload_s" "$warmup_s"; secs=$overload_s ;;
      x4) run_x4 "$(times 4 "$capacity")" "$(times "$recovery_rate" "$capacity")"; secs=$x4_s ;;
    esac
    ran+=("$p")
    secs_json=$(jq -c --arg p "$p" --argjson s "$secs" '.[$p] = $s' <<<"$secs_json")
  done
fi

budget_ms=$(awk -F'[=#]' '$1 ~ /^budget_ms/ { print $2 + 0 }' "$serve_dir/$config" 2>/dev/null || true)
allowance_ms=$(awk -F'[=#]' '$1 ~ /^network_allowance_ms/ { print $2 + 0 }' "$serve_dir/$config" 2>/dev/null || true)
if [ -n "$budget_ms" ] && [ -n "$allowance_ms" ] && [ "$tmax_ms" != keep ]; then
  server_deadline="min($tmax_ms − $allowance_ms, $budget_ms) = $(( tmax_ms - allowance_ms < budget_ms ? tmax_ms - allowance_ms : budget_ms )) ms"
else
  server_deadline="per request (budget_ms ${budget_ms:-?}, network_allowance_ms ${allowance_ms:-?})"
fi
jq -n \
  --arg date "$(date -u +%Y-%m-%dT%H:%MZ)" --arg layout "$layout" --arg bin "$bin" \
  --arg rev "$(git -C "$serve_dir" rev-parse --short HEAD 2>/dev/null || echo 'no git')" \
  --arg config "$config" --arg server_cpus "$server_cpus" --arg gen_cpus "$gen_cpus" \
  --arg server_threads_note "$threads_note" --arg server_threads "$server_threads" \
  --argjson nproc "$nproc" --argjson wrk_threads "$wrk_threads" --argjson wrk_connections "$wrk_connections" \
  --argjson loadgen_threads "$loadgen_threads" --argjson corpus_lines "$(wc -l <"$corpus_file")" \
  --arg tmax "$([ "$tmax_ms" = keep ] && echo '100–300 ms (the corpus)' || echo "$tmax_ms ms in every request")" \
  --arg server_deadline "$server_deadline" --argjson timeout_ms "$timeout_ms" --argjson warmup_s "$warmup_s" \
  --arg load_start "$load_start" --arg load_end "$(cut -d' ' -f1 /proc/loadavg)" \
  --argjson nbr_body "$(grep -Eq '^nbr_body *= *true' "$serve_dir/$config" 2>/dev/null && echo true || echo false)" \
  --argjson capacity "${capacity:-null}" --arg capacity_source "$capacity_source" \
  --argjson wrk_rps "$wrk_rps" --argjson wrk_p99 "$wrk_p99" --argjson capacity_s "$capacity_s" \
  --argjson search_wall_s "$search_wall" --argjson secs "$secs_json" \
  --argjson ran "$(printf '%s\n' "${ran[@]}" | jq -R . | jq -sc 'map(select(. != ""))')" \
  '$ARGS.named' >"$out/run.json"
"$python" "$helper" report "$out" "$report"
echo
cat "$report"
if [ -n "$crashed" ] || ! alive; then echo "the server died; see $out/serve.log" >&2; exit 1; fi
