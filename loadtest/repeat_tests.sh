#!/usr/bin/env bash
# Runs the end-to-end test binaries (and the timing-sensitive unit tests) N times in a
# row while a second bidder is kept busy beside them by `ctrbid loadgen`: a test that
# races the clock or the box fails here, not once a week in CI.
#
#   N=20 RATE=400 loadtest/repeat_tests.sh       (make repeat-tests)
#
# Prints one line per round and, at the end, every failure with its round; exits 1 if
# any round failed. The load's own summary goes to target/repeat-tests/loadgen.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20}
RATE=${RATE:-400}
PORT=${PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19090}
BINARIES=(openrtb_e2e bid_e2e bad_input http_coding notices_e2e server_limits admin_e2e
  loadgen_e2e pin_threads realtime_inference)
# Unit tests of the library that wait on time: the workers' busy share and the metrics.
UNIT_FILTERS=(scoring::busy metrics::)

OUT=target/repeat-tests
mkdir -p "$OUT"
cargo build --release --quiet
cargo test --release --quiet --no-run --lib "${BINARIES[@]/#/--test=}" 2>/dev/null

# The load: the Prebid samples as a corpus, sent at RATE to a bidder of its own.
python3 - >"$OUT/corpus.jsonl" <<'EOF'
import json, pathlib
for p in sorted(pathlib.Path("tests/fixtures/openrtb/prebid").glob("*.json")):
    print(json.dumps(json.loads(p.read_text())))
EOF
BIN=target/release/ctrbid
"$BIN" serve --config deploy/ctrbid.toml --listen "127.0.0.1:$PORT" \
  --admin-listen "127.0.0.1:$ADMIN_PORT" --events-dir none >"$OUT/server.txt" 2>&1 &
SERVER=$!
LOADGEN=
cleanup() {
  [ -n "$LOADGEN" ] && kill "$LOADGEN" 2>/dev/null || true
  kill "$SERVER" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
  curl -sf "localhost:$ADMIN_PORT/readyz" >/dev/null && break
  sleep 0.2
done
curl -sf "localhost:$ADMIN_PORT/readyz" >/dev/null || { echo "the load's bidder did not start:"; cat "$OUT/server.txt"; exit 1; }
"$BIN" loadgen --url "http://127.0.0.1:$PORT/openrtb2/bid" --corpus "$OUT/corpus.jsonl" \
  --rate "$RATE" --duration-s 86400 --warmup-s 0 >"$OUT/loadgen.txt" 2>&1 &
LOADGEN=$!

failures=()
for round in $(seq "$N"); do
  started=$(date +%s)
  if cargo test --release --quiet "${BINARIES[@]/#/--test=}" >"$OUT/round-$round.txt" 2>&1 &&
    cargo test --release --quiet --lib -- "${UNIT_FILTERS[@]}" >>"$OUT/round-$round.txt" 2>&1; then
    verdict=pass
  else
    verdict=FAIL
    failures+=("round $round: $(grep -E '^(test .* FAILED|---- )' "$OUT/round-$round.txt" | head -3 | tr '\n' ' ')")
  fi
  passed=$(grep -hoE '^test result: ok. [0-9]+ passed' "$OUT/round-$round.txt" | awk '{s += $4} END {print s + 0}')
  served=$(curl -s "localhost:$ADMIN_PORT/metrics" | awk '/^ctrbid_requests_total/ {s += $2} END {print s + 0}')
  echo "round $round/$N: $verdict ($passed tests passed in $(($(date +%s) - started)) s; the load's bidder has served $served)"
done

if [ ${#failures[@]} -gt 0 ]; then
  printf '%s\n' "${#failures[@]} of $N rounds failed:" "${failures[@]}"
  exit 1
fi
echo "all $N rounds passed, with $RATE requests/s of load beside them"
