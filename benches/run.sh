#!/usr/bin/env bash
# Side-by-side benchmark: Tether against a bare tokio-websockets server
# (benches/baseline: upstream tokio-websockets, unpatched), Node `ws` (benches/node) and Socket.IO 4
# over its websocket transport (benches/socketio), in one run,
# alternating server by server within each round, so that drift on a shared
# machine hits all of them alike. Each server runs pinned to CPU 0 and the
# load (`tether bench`) to CPU 1; every server is a fresh process per
# scenario, so its RSS starts from the same point.
#
# Usage: benches/run.sh [scenario...]      scenarios: idle connect fanout closedloop burst1k burst2k burst4k echo storm
#        (burst1k is not in the default set: 1,000 × 1,000 msg/s, a burst the
#        load generator can read even on a shared machine)
# Environment: ROUNDS (2), CONNS (10000), SERVERS ("tether baseline node socketio";
#              also baseline-bare: the baseline relaying the bare payload, not
#              Tether's message frame, as in runs A-H; and tether-redis:
#              Tether on --broker redis, with a redis-server of its own on
#              the server CPU),
#              OUT (target/bench), SERVER_CPU (0), LOAD_CPU (1)
# Results: $OUT/results.jsonl (one JSON report per run) and a summary with
# medians and ratios printed at the end ($OUT/summary.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-10000}
SERVERS=${SERVERS:-"tether baseline node socketio"}
OUT=${OUT:-target/bench}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SCENARIOS=${*:-"idle connect fanout closedloop burst2k burst4k echo storm"}
for s in $SCENARIOS; do
  case $s in
    idle | connect | fanout | closedloop | burst1k | burst2k | burst4k | echo | storm) ;;
    saturate | overload)
      echo "scenario $s is now burst2k / burst4k (1,000 subscribers × 2,000 / 4,000 msg/s, 5 s)" >&2
      exit 2 ;;
    *) echo "unknown scenario $s (expected idle connect fanout closedloop burst1k burst2k burst4k echo storm)" >&2; exit 2 ;;
  esac
done
TETHER=target/release/tether
BASELINE=benches/baseline/target/release/tether-bench-baseline

mkdir -p "$OUT"
: >"$OUT/results.jsonl"

cargo build --release -p tether --bin tether
# Upstream tokio-websockets, outside this workspace and its vendored patches.
cargo build --release --manifest-path benches/baseline/Cargo.toml
# The Node servers, each installed from its committed lock file.
for js in node socketio; do
  [[ " $SERVERS " == *" $js "* ]] || continue
  if command -v node >/dev/null && command -v npm >/dev/null; then
    (cd "benches/$js" && npm ci --no-audit --no-fund --silent)
  else
    echo "node/npm not found: skipping the $js baseline (benches/$js)" >&2
    SERVERS=$(echo " $SERVERS " | sed "s/ $js / /")
  fi
done

# Limits that would otherwise refuse a benchmark's own load (it comes from
# a handful of loopback addresses at full speed). The storm scenario runs
# Tether with its defaults instead: smoothing storms is what they are for.
BENCH_LIMITS=(--max-connections 100000 --max-connections-per-ip 100000
  --handshake-rate-per-ip 1000000 --handshake-burst-per-ip 1000000
  --messages-per-second 1000000 --messages-burst 1000000)

PORT=18080
SERVER_PID=""

# start_server NAME [defaults] -> sets SERVER_PID, URL_WS, URL_ECHO, PROTO, ECHO_PROTO
start_server() {
  local name=$1 mode=${2:-bench} log="$OUT/server-$1.log"
  PORT=$((PORT + 1))
  local addr="127.0.0.1:$PORT"
  case $name in
    tether)
      local limits=("${BENCH_LIMITS[@]}")
      [[ $mode == defaults ]] && limits=()
      taskset -c "$SERVER_CPU" "$TETHER" serve --listen "$addr" "${limits[@]}" >"$log" 2>&1 &
      PROTO=tether ;;
    tether-redis) # Redis shares the server's CPU: the node's cost with its broker's
      local limits=("${BENCH_LIMITS[@]}")
      [[ $mode == defaults ]] && limits=()
      REDIS_DIR=$(mktemp -d)
      taskset -c "$SERVER_CPU" redis-server --port $((PORT + 1000)) --bind 127.0.0.1 --dir "$REDIS_DIR" \
        --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
      REDIS_PID=$!
      for _ in $(seq 50); do redis-cli -p $((PORT + 1000)) ping >/dev/null 2>&1 && break; sleep 0.1; done
      taskset -c "$SERVER_CPU" "$TETHER" serve --listen "$addr" "${limits[@]}" --broker redis \
        --redis-url "redis://127.0.0.1:$((PORT + 1000))" >"$log" 2>&1 &
      PROTO=tether ;;
    baseline | baseline-bare)
      taskset -c "$SERVER_CPU" "$BASELINE" "$addr" >"$log" 2>&1 &
      PROTO=raw ;;
    node)
      taskset -c "$SERVER_CPU" node benches/node/server.js "$addr" >"$log" 2>&1 &
      PROTO=raw ;;
    socketio)
      taskset -c "$SERVER_CPU" node benches/socketio/server.js "$addr" >"$log" 2>&1 &
      PROTO=socketio ;;
    *)
      echo "unknown server $name (expected tether, tether-redis, baseline, baseline-bare, node or socketio)" >&2
      exit 2 ;;
  esac
  SERVER_PID=$!
  # What raw/Socket.IO fan-out publishers send for the server to relay:
  # Tether's `message` frame (equal bytes for every server's subscribers),
  # or for baseline-bare the bare stamped payload (runs A-H).
  ENVELOPE=(--envelope message)
  [[ $name == baseline-bare ]] && ENVELOPE=(--envelope none)
  URL_WS="ws://$addr/ws"
  URL_ECHO="ws://$addr/echo"
  ECHO_PROTO=raw
  if [[ $PROTO == socketio ]]; then # one endpoint; events tell echo from publish
    URL_WS="ws://$addr/socket.io/?EIO=4&transport=websocket"
    URL_ECHO=$URL_WS
    ECHO_PROTO=socketio
  fi
  for _ in $(seq 100); do
    if grep -q "listening on" "$log" 2>/dev/null; then
      # On Redis, ready once its connections are up.
      [[ $name != tether-redis ]] && return 0
      curl -sf "http://$addr/readyz" >/dev/null && return 0
    fi
    sleep 0.1
  done
  echo "$name did not start; see $log" >&2
  exit 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID="" # gone: the EXIT trap must not kill it again (a failed kill under set -e made a good run exit 1)
  if [[ -n ${REDIS_PID:-} ]]; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    rm -rf "$REDIS_DIR"
    REDIS_PID=""
  fi
  sleep 1 # let TIME_WAIT sockets and the kernel settle between runs
}

# The kernel's TCP counters that show a connect burst going wrong: accept
# queue overflows (the SYN or final ACK dropped), SYN retransmits (each one
# costs its client 1 s, then 3 s, 7 s...) and SYN-queue overflows answered
# with cookies. System-wide (nstat is in iproute2), read around every load.
TCP_COUNTERS="TcpExtListenOverflows TcpExtListenDrops TcpExtTCPSynRetrans TcpExtTCPReqQFullDoCookies TcpExtTCPReqQFullDrop"
tcp_counters() {
  if command -v nstat >/dev/null; then
    # -a absolute, -s do not touch nstat's history file, -z print zeros.
    nstat -asz $TCP_COUNTERS 2>/dev/null | awk 'NR > 1 && NF >= 2 { printf "%s=%s ", $1, $2 }'
  fi
}

# A failed step must not leave a server holding its port for the next run.
trap '[[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null; [[ -n ${REDIS_PID:-} ]] && kill "$REDIS_PID" 2>/dev/null || true' EXIT

# load ROUND SERVER SCENARIO ARGS... : runs tether bench on the load CPU and
# appends its JSON report, tagged (and with the kernel's TCP counter deltas
# as "tcp"), to results.jsonl. A run that overflowed an accept queue or
# retransmitted SYNs is called out on stderr: its connect figures measure
# the kernel's retry timers, not the server.
load() {
  local round=$1 server=$2 scenario=$3
  shift 3
  local json before after
  before=$(tcp_counters)
  json=$(taskset -c "$LOAD_CPU" "$TETHER" bench "$@" --json) || true
  after=$(tcp_counters)
  if [[ -z $json ]]; then
    echo "  $server $scenario: no report" >&2
    return
  fi
  echo "$json" | python3 -c '
import json, sys
r = json.load(sys.stdin)
r.update(round=int(sys.argv[1]), server=sys.argv[2], run=sys.argv[3])
parse = lambda s: {k.removeprefix("TcpExt"): int(v) for k, v in (kv.split("=") for kv in s.split())}
before, after = parse(sys.argv[4]), parse(sys.argv[5])
if before and after:
    r["tcp"] = {k: after[k] - before[k] for k in after if k in before}
    bad = {k: v for k, v in r["tcp"].items() if v and k != "TCPReqQFullDoCookies"}
    if bad:
        tag = " ".join(str(r[k]) for k in ("round", "server", "run"))
        print(f"  WARNING round {tag}: kernel TCP counters moved during the run: {bad} "
              "(accept queue overflowed / SYNs retransmitted: connect figures of this round measure retry timers)", file=sys.stderr)
print(json.dumps(r))' \
    "$round" "$server" "$scenario" "$before" "$after" | tee -a "$OUT/results.jsonl" | cut -c1-200
}

for round in $(seq "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    for server in $SERVERS; do
      echo "== round $round: $scenario on $server" >&2
      case $scenario in
        idle)
          start_server "$server"
          # 256 handshakes in flight (within every server's 4,096-deep
          # accept queue), spread over 4 source addresses.
          load "$round" "$server" idle idle "$URL_WS" --protocol "$PROTO" \
            --connections "$CONNS" --concurrency 256 --sources 4 --hold 5s --server-pid "$SERVER_PID" ;;
        connect) # the connect rate alone: each connection is done at its
          # handshake (Tether: at its welcome, when a client is connected;
          # idle's Tether figure also waits for a subscribe round trip)
          start_server "$server"
          load "$round" "$server" connect idle "$URL_WS" --protocol "$PROTO" --channel= \
            --connections "$CONNS" --concurrency 256 --sources 4 --hold 1s ;;
        closedloop) # the most a server sustains: 1,000 subscribers, the
          # publisher as fast as 64 publications in flight allow, 5 s
          start_server "$server"
          load "$round" "$server" closedloop fanout "$URL_WS" --protocol "$PROTO" \
            --subscribers 1000 --rate 1000000 --window 64 "${ENVELOPE[@]}" --duration 5s --server-pid "$SERVER_PID" ;;
        fanout) # latency at a fixed, sub-saturation load
          start_server "$server"
          load "$round" "$server" fanout fanout "$URL_WS" --protocol "$PROTO" \
            --subscribers 2000 --rate 25 "${ENVELOPE[@]}" --duration 10s --server-pid "$SERVER_PID" ;;
        burst1k) # open loop, 1,000 × 1,000 msg/s for 5 s = 1M deliveries/s offered:
          # half of burst2k, so the latency is the servers' and not the load CPU's backlog
          start_server "$server"
          load "$round" "$server" burst1k fanout "$URL_WS" --protocol "$PROTO" \
            --subscribers 1000 --rate 1000 "${ENVELOPE[@]}" --duration 5s --server-pid "$SERVER_PID" ;;
        burst2k) # open loop, 1,000 × 2,000 msg/s for 5 s = 2M deliveries/s offered:
          # about what one server CPU can write and the load CPU can read
          start_server "$server"
          load "$round" "$server" burst2k fanout "$URL_WS" --protocol "$PROTO" \
            --subscribers 1000 --rate 2000 "${ENVELOPE[@]}" --duration 5s --server-pid "$SERVER_PID" ;;
        burst4k) # open loop, 1,000 × 4,000 msg/s for 5 s = 4M deliveries/s offered:
          # more than the subscribers can read; who is closed, what is buffered
          start_server "$server"
          load "$round" "$server" burst4k fanout "$URL_WS" --protocol "$PROTO" \
            --subscribers 1000 --rate 4000 "${ENVELOPE[@]}" --duration 5s --server-pid "$SERVER_PID" ;;
        echo)
          start_server "$server"
          load "$round" "$server" echo echo "$URL_ECHO" --protocol "$ECHO_PROTO" \
            --connections 100 --size 20 --duration 5s --server-pid "$SERVER_PID" ;;
        storm) # Tether with its default limits; 5,000 clients from 10 addresses
          start_server "$server" defaults
          load "$round" "$server" storm storm "$URL_WS" --protocol "$PROTO" \
            --clients 5000 --sources 10 --timeout 60s ;;
      esac
      stop_server
    done
  done
done

python3 benches/summary.py "$OUT/results.jsonl" | tee "$OUT/summary.txt"
