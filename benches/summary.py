#!/usr/bin/env python3
"""Summarises benches/run.sh results: per scenario, each server's figures
(median over rounds, with the range) and Tether's ratio to each baseline
(tether / baseline, tether / node, tether / socketio: whichever ran),
computed from the medians of one run."""
import json
import statistics
import sys
from collections import defaultdict

# Figures of an open-loop burst (a fanout run past or near saturation).
BURST = [
    ("subscribers closed", ("closed_early",), False),
    ("deliveries/s", ("deliveries_per_sec",), True),
    ("p50 ms", ("latency", "p50_ms"), False),
    ("p99 ms", ("latency", "p99_ms"), False),
    ("server RSS growth KiB", ("server_rss_growth_kib",), False),
    ("not delivered", ("lost",), False),
    ("deliveries/server CPU-s", ("deliveries_per_server_cpu_sec",), True),
    ("load generator CPU s", ("client_cpu_secs",), False),
    ("server writes / 1k deliveries", ("server_writes_per_1k_deliveries",), False),
    ("delivered frame bytes", ("delivered_frame_bytes",), False),
]

# scenario -> [(label, field path, higher is better)]
FIGURES = {
    "idle": [
        ("server RSS KiB/conn", ("server_rss_per_conn_kib",), False),
        ("server anon KiB/conn", ("server_anon_per_conn_kib",), False),
        ("connects/s (Tether: + subscribe)", ("connects_per_sec",), True),
        ("established", ("established",), True),
        ("listen overflows", ("tcp", "ListenOverflows"), False),
        ("SYN retransmits", ("tcp", "TCPSynRetrans"), False),
    ],
    # 10,000 connects, each done at the handshake (Tether: at its welcome).
    "connect": [
        ("connects/s", ("connects_per_sec",), True),
        ("handshake p50 ms", ("connect_latency", "p50_ms"), False),
        ("handshake p99 ms", ("connect_latency", "p99_ms"), False),
        ("established", ("established",), True),
        ("listen overflows", ("tcp", "ListenOverflows"), False),
        ("SYN retransmits", ("tcp", "TCPSynRetrans"), False),
    ],
    # Closed loop: 1,000 subscribers, the publisher as fast as the window of
    # 64 publications in flight allows, 5 s: the most each server sustains.
    "closedloop": BURST,
    "fanout": [
        ("deliveries/s", ("deliveries_per_sec",), True),
        ("p50 ms", ("latency", "p50_ms"), False),
        ("p99 ms", ("latency", "p99_ms"), False),
        ("max ms", ("latency", "max_ms"), False),
        ("lost", ("lost",), False),
        ("server CPU s", ("server_cpu_secs",), False),
        ("deliveries/server CPU-s", ("deliveries_per_server_cpu_sec",), True),
        ("load generator CPU s", ("client_cpu_secs",), False),
        ("server writes / 1k deliveries", ("server_writes_per_1k_deliveries",), False),
        ("delivered frame bytes", ("delivered_frame_bytes",), False),
    ],
    # Open-loop bursts: 1,000 subscribers × 2,000 / 4,000 msg/s for 5 s.
    "burst1k": BURST,
    "burst2k": BURST,
    "burst4k": BURST,
    # Their names in runs A-E (benches/results/run-*-2026-11-2*.jsonl):
    # saturate = burst2k, overload = 1,000 × 4,000 msg/s for 3 s.
    "saturate": BURST,
    "overload": BURST,
    "echo": [
        ("msg/s", ("messages_per_sec",), True),
        ("msg/server CPU-s", ("messages_per_server_cpu_sec",), True),
        ("p99 ms", ("round_trip", "p99_ms"), False),
    ],
    "storm": [
        ("all connected s", ("all_connected_secs",), False),
        ("first 101", ("first_attempt", "101"), True),
        ("first 429", ("first_attempt", "429"), False),
        ("first 503", ("first_attempt", "503"), False),
        ("attempts", ("attempts",), False),
    ],
}


def get(report, path):
    v = report
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if isinstance(v, float) and v != int(v):
        return f"{v:.2f}"
    return f"{int(v):,}"


def main(path):
    runs = defaultdict(lambda: defaultdict(list))  # scenario -> server -> reports
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                runs[r["run"]][r["server"]].append(r)
    for scenario, servers in runs.items():
        print(f"\n## {scenario}")
        names = list(servers)
        print("| figure | " + " | ".join(names) + " | " + " | ".join(
            f"tether / {n}" for n in names if n != "tether") + " |")
        print("|---" * (1 + len(names) + len([n for n in names if n != "tether"])) + "|")
        for label, field, _higher in FIGURES.get(scenario, []):
            medians, cells = {}, []
            for n in names:
                values = [v for v in (get(r, field) for r in servers[n]) if v is not None]
                if not values:
                    cells.append("-")
                    continue
                m = statistics.median(values)
                medians[n] = m
                spread = f" ({fmt(min(values))}–{fmt(max(values))})" if len(values) > 1 and min(values) != max(values) else ""
                cells.append(fmt(m) + spread)
            ratios = []
            for n in names:
                if n == "tether":
                    continue
                a, b = medians.get("tether"), medians.get(n)
                ratios.append(f"{a / b:.2f}x" if a is not None and b else "-")
            print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
        per_round(scenario, servers)


# Per-round figures worth seeing one by one: a median of two hides a round
# that collapsed (SYN retransmits) or a backlog that grew through a burst.
PER_ROUND = {
    "idle": [("connects/s", ("connects_per_sec",)), ("connect s", ("connect_secs",)),
             ("handshake p99 ms", ("connect_latency", "p99_ms")),
             ("listen overflows", ("tcp", "ListenOverflows")), ("SYN retransmits", ("tcp", "TCPSynRetrans"))],
    "connect": [("connects/s", ("connects_per_sec",)), ("connect s", ("connect_secs",)),
                ("handshake p99 ms", ("connect_latency", "p99_ms")),
                ("listen overflows", ("tcp", "ListenOverflows")), ("SYN retransmits", ("tcp", "TCPSynRetrans"))],
    "closedloop": [("deliveries/s", ("deliveries_per_sec",)), ("p99 ms", ("latency", "p99_ms")),
                   ("server CPU s", ("server_cpu_secs",)), ("load CPU s", ("client_cpu_secs",))],
    "fanout": [("p99 ms", ("latency", "p99_ms"))],
    "burst1k": [("deliveries/s", ("deliveries_per_sec",)), ("p99 ms", ("latency", "p99_ms"))],
    "burst2k": [("deliveries/s", ("deliveries_per_sec",)), ("p99 ms", ("latency", "p99_ms"))],
    "burst4k": [("deliveries/s", ("deliveries_per_sec",)), ("p99 ms", ("latency", "p99_ms"))],
}


def per_round(scenario, servers):
    rows = PER_ROUND.get(scenario)
    if not rows:
        return
    print(f"\nper round ({scenario}):")
    for n, reports in servers.items():
        for r in sorted(reports, key=lambda r: r.get("round", 0)):
            cells = [f"{label} {fmt(get(r, field))}" for label, field in rows]
            by_second = r.get("latency_by_second")
            if by_second:
                cells.append("p99 by second " + " ".join(fmt(l["p99_ms"]) for l in by_second))
            print(f"  {n} round {r.get('round')}: " + ", ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench/results.jsonl")
