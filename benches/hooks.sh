#!/usr/bin/env bash
# What a backend in the loop costs: `tether bench hooks` (the bench is the
# backend: it answers the connect hook at once and counts the lifecycle
# events) against one Tether node twice in one run — without hooks, then
# with --hook-connect and --events-url pointing at the bench — so the
# connect hook's added latency and the handshake rate are read as ratios.
#
# Usage: benches/hooks.sh
# Environment: CONNS (2000), CONCURRENCY (64), ROUNDS (2), OUT (target/bench-hooks),
#              SERVER_CPU (0), LOAD_CPU (1)
# Results: $OUT/results.jsonl (one JSON report per run) and the medians printed.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-2000}
CONCURRENCY=${CONCURRENCY:-64}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-target/bench-hooks}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TETHER=target/release/tether

mkdir -p "$OUT"
: >"$OUT/results.jsonl"
cargo build --release -p tether --bin tether

BENCH_LIMITS=(--max-connections 100000 --max-connections-per-ip 100000
  --handshake-rate-per-ip 1000000 --handshake-burst-per-ip 1000000
  --messages-per-second 1000000 --messages-burst 1000000 --allow-anonymous)

SERVER_PID=""
stop() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""
}
trap stop EXIT

PORT=18580
for round in $(seq "$ROUNDS"); do
  for mode in plain hooks; do
    PORT=$((PORT + 2))
    addr="127.0.0.1:$PORT" backend="127.0.0.1:$((PORT + 1))"
    hooks=()
    if [[ $mode == hooks ]]; then
      hooks=(--hook-connect "http://$backend/connect" --events-url "http://$backend/events"
        --hook-secret bench-secret)
    fi
    log="$OUT/server-$mode-$round.log"
    taskset -c "$SERVER_CPU" "$TETHER" serve --listen "$addr" "${BENCH_LIMITS[@]}" "${hooks[@]}" >"$log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do grep -q "listening on" "$log" 2>/dev/null && break; sleep 0.1; done
    grep -q "listening on" "$log" || { echo "tether ($mode) did not start: $log" >&2; exit 1; }
    taskset -c "$LOAD_CPU" "$TETHER" bench hooks "ws://$addr/ws" --connections "$CONNS" \
      --concurrency "$CONCURRENCY" --backend-listen "$backend" --settle 30s --json |
      python3 -c "import json,sys; r=json.load(sys.stdin); r['mode']='$mode'; r['round']=$round; print(json.dumps(r))" \
        >>"$OUT/results.jsonl"
    stop
  done
done

python3 - "$OUT/results.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(mode, f):
    return statistics.median(f(r) for r in rows if r["mode"] == mode)
for name, f in [("handshakes/s", lambda r: r["handshakes_per_sec"]),
                ("welcome p50 ms", lambda r: r["welcome_latency"]["p50_ms"]),
                ("welcome p99 ms", lambda r: r["welcome_latency"]["p99_ms"])]:
    plain, hooks = med("plain", f), med("hooks", f)
    print(f"{name}: without hooks {plain}, with the connect hook {hooks} ({hooks / plain:.2f}x)")
print(f"events/s delivered: {med('hooks', lambda r: r['events_per_sec'])} "
      f"({med('hooks', lambda r: r['events'])} events of {2 * med('hooks', lambda r: r['established'])} expected)")
EOF
