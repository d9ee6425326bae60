#!/usr/bin/env bash
# What presence costs: `tether bench presence` against one Tether node whose
# rule gives `bench-presence:*` presence, on the memory broker and on
# --broker redis (a redis-server of its own, on the server's CPU), in one
# run. CLIENTS clients are held present over CHANNELS channels; the bench
# reads Redis's INFO over a quiet WINDOW (nothing but the node's presence
# refreshes, every --presence-ttl / 3) and times REQUESTS `presence`
# requests on a channel of CLIENTS / CHANNELS + 1 entries.
#
# Usage: benches/presence.sh
# Environment: CLIENTS (10000), CHANNELS (10), REQUESTS (200), WINDOW (30s),
#              PRESENCE_TTL (30s), BROKERS ("memory redis"), OUT (target/bench-presence),
#              SERVER_CPU (0), LOAD_CPU (1)
# Results: $OUT/results.jsonl (one JSON report per broker) and the human
# summaries on standard output.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-10000}
CHANNELS=${CHANNELS:-10}
REQUESTS=${REQUESTS:-200}
WINDOW=${WINDOW:-30s}
PRESENCE_TTL=${PRESENCE_TTL:-30s}
BROKERS=${BROKERS:-"memory redis"}
OUT=${OUT:-target/bench-presence}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TETHER=target/release/tether

mkdir -p "$OUT"
: >"$OUT/results.jsonl"
cargo build --release -p tether --bin tether

cat >"$OUT/presence.toml" <<'EOF'
[[channels]]
pattern = "bench-presence:*"
presence = true
EOF

BENCH_LIMITS=(--max-connections 100000 --max-connections-per-ip 100000
  --max-subscriptions-per-ip 100000
  --handshake-rate-per-ip 1000000 --handshake-burst-per-ip 1000000
  --messages-per-second 1000000 --messages-burst 1000000)

SERVER_PID="" REDIS_PID="" REDIS_DIR=""
stop() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [[ -n $REDIS_PID ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
  [[ -n $REDIS_DIR ]] && rm -rf "$REDIS_DIR"
  SERVER_PID="" REDIS_PID="" REDIS_DIR=""
}
trap stop EXIT

PORT=18380
for broker in $BROKERS; do
  PORT=$((PORT + 1))
  addr="127.0.0.1:$PORT"
  log="$OUT/server-$broker.log"
  redis=()
  bench_redis=()
  if [[ $broker == redis ]]; then
    rport=$((PORT + 1000))
    REDIS_DIR=$(mktemp -d)
    taskset -c "$SERVER_CPU" redis-server --port "$rport" --bind 127.0.0.1 --dir "$REDIS_DIR" \
      --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis=(--broker redis --redis-url "redis://127.0.0.1:$rport" --presence-ttl "$PRESENCE_TTL")
    bench_redis=(--redis-url "redis://127.0.0.1:$rport")
  fi
  taskset -c "$SERVER_CPU" "$TETHER" serve --config "$OUT/presence.toml" --listen "$addr" \
    "${BENCH_LIMITS[@]}" "${redis[@]}" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$log" 2>/dev/null && break; sleep 0.1; done
  grep -q "listening on" "$log" || { echo "tether ($broker) did not start: $log" >&2; exit 1; }
  # Ready (with Redis: connected) before the load starts.
  for _ in $(seq 100); do curl -sf "http://$addr/readyz" >/dev/null && break; sleep 0.1; done
  echo "== presence, $broker broker"
  taskset -c "$LOAD_CPU" "$TETHER" bench presence "ws://$addr/ws" --clients "$CLIENTS" \
    --channels "$CHANNELS" --requests "$REQUESTS" --window "$WINDOW" \
    --server-pid "$SERVER_PID" "${bench_redis[@]}" --timeout 300s --json |
    tee -a "$OUT/results.jsonl" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({k: r[k] for k in ("held","established","dropped","entries_listed","presence_latency","redis","server_cpu_percent")}, indent=1))'
  stop
done
