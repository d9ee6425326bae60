#!/usr/bin/env bash
# Server instructions per fan-out delivery, repeatable on a shared machine
# (instruction counts do not depend on what else runs). The server runs under
# valgrind --tool=callgrind on CPU 0; three `tether bench fanout` runs
# (SHORT, LONG, SHORT) follow, with a callgrind dump (which zeroes the
# counters) after each; (Ir of LONG - Ir of the second SHORT) / (deliveries
# of LONG - deliveries of the second SHORT) is the marginal cost of one
# delivery, handshakes and startup cancelled out.
#
# Usage: benches/callgrind-fanout.sh tether|baseline|baseline-bare PORT
# Environment: SUBS (200), RATE (20 msg/s: low enough that, even under
# valgrind, each publication wakes every session on its own, as in the
# fanout scenario), SHORT (2s), LONG (10s), OUT (target/callgrind).
# Profiles: $OUT/NAME/cg.PID.out.N (callgrind_annotate --inclusive=yes).
set -u
cd "$(dirname "$0")/.."
name=$1 port=$2 subs=${SUBS:-200} rate=${RATE:-20}
out=${OUT:-target/callgrind}/$name; rm -rf "$out"; mkdir -p "$out"
LIM="--max-connections 100000 --max-connections-per-ip 100000 --handshake-rate-per-ip 1000000 --handshake-burst-per-ip 1000000 --messages-per-second 1000000 --messages-burst 1000000"
case $name in
  tether) cmd="target/release/tether serve --listen 127.0.0.1:$port $LIM"; proto=tether; env="";;
  baseline) cmd="benches/baseline/target/release/tether-bench-baseline 127.0.0.1:$port"; proto=raw; env="--envelope message";;
  baseline-bare) cmd="benches/baseline/target/release/tether-bench-baseline 127.0.0.1:$port"; proto=raw; env="--envelope none";;
  *) echo "usage: $0 tether|baseline|baseline-bare PORT" >&2; exit 2;;
esac
taskset -c 0 valgrind --tool=callgrind --callgrind-out-file=$out/cg.%p.out $cmd >$out/server.log 2>&1 &
VP=$!
for i in $(seq 300); do grep -q "listening on" $out/server.log && break; sleep 0.2; done
sleep 1

runit() { # duration tag
  taskset -c 1 target/release/tether bench fanout ws://127.0.0.1:$port/ws --protocol $proto $env --subscribers $subs --rate $rate --duration $1 --timeout 300s --server-pid $VP --json > $out/$2.json
  sleep 1
  callgrind_control -d $2 $VP >/dev/null 2>&1
  sleep 2
}
callgrind_control -z $VP >/dev/null 2>&1
runit ${SHORT:-2s} short1
runit ${LONG:-10s} long
runit ${SHORT:-2s} short2
kill $VP; wait $VP 2>/dev/null
python3 - "$out" <<'PY'
import json, sys, glob, re
out = sys.argv[1]
def ir(tag):
    f = [p for p in glob.glob(f"{out}/cg.*.out*") if f"Trigger: dump {tag}\n" in open(p).read(4000)]
    tot = 0
    for p in f:
        for line in open(p):
            if line.startswith("summary:") or line.startswith("totals:"):
                tot = max(tot, int(line.split()[1]))
    return tot, f
res = {}
for t in ("short1", "long", "short2"):
    r = json.load(open(f"{out}/{t}.json"))
    res[t] = (ir(t)[0], r["delivered"], r["latency"]["p99_ms"], r["delivered_frame_bytes"], r.get("server_writes_per_1k_deliveries"))
    print(t, "Ir, delivered, p99 ms, frame bytes, writes/1k:", res[t])
dIr = res["long"][0] - res["short2"][0]; dDel = res["long"][1] - res["short2"][1]
print(f"{out.split('/')[-1]}: marginal Ir per delivery = {dIr/dDel:.0f}  (long {res['long'][0]/res['long'][1]:.0f} Ir/delivery incl. fixed; "
      f"{res['long'][4]} write system calls per 1,000 deliveries, eventfd wake-ups included: compare servers at equal batching)")
PY
