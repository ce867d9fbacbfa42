"""Prints the comparison table of a bench/compare.sh results file: medians per server, and the
ratio PeerPigeon-rs / reference with what 'better' means for each figure."""
import json
import statistics
import sys

# name -> (label, how to read the figure from a result, True if higher is better)
FIGURES = [
    ("discovery", "full discovery of all peers, ms", lambda r: r.get("fullDiscoveryMs"), False),
    ("discovery", "  GET /health p99 meanwhile, ms", lambda r: (r.get("health") or {}).get("p99Ms"), False),
    ("discovery", "  RSS per peer 0.5 s later, one network, KiB", lambda r: r.get("rssPerPeerKiB"), False),
    ("memory", "RSS per peer 0.5 s after discovery, networks of 100, KiB", lambda r: r.get("rssPerPeerKiB"), False),
    ("saturation", "relay throughput, closed loop, signals/s", lambda r: r.get("signalsPerSec"), True),
    ("latency-5k", "relay p99 at 5,000 signals/s, ms", lambda r: r.get("latencyMs", {}).get("p99"), False),
    ("latency-20k", "relay p99 at 20,000 signals/s, ms", lambda r: r.get("latencyMs", {}).get("p99"), False),
    ("latency-5k", "  lost + duplicated at 5,000/s", lambda r: (r.get("lost", 0) + r.get("duplicated", 0)), False),
    ("latency-20k", "  lost + duplicated at 20,000/s", lambda r: (r.get("lost", 0) + r.get("duplicated", 0)), False),
    ("churn", "churn, connections/s", lambda r: r.get("connectionsPerSec"), True),
    ("hub", "cross-hub discovery, 2 hubs x 100 peers, ms", lambda r: r.get("crossHubDiscoveryMs"), False),
    ("hub", "  peers still missing a discovery after 60 s", lambda r: r.get("incompletePeers"), False),
    ("hub", "cross-hub relay p99 at 1,000 signals/s, ms", lambda r: r.get("latencyMs", {}).get("p99"), False),
    ("hub", "  lost + duplicated across hubs", lambda r: (r.get("lost", 0) + r.get("duplicated", 0)), False),
]


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    print(f"{'figure':50} {'PeerPigeon-rs':>14} {'reference':>12} {'rs/ref':>8}")
    for name, label, get, higher_better in FIGURES:
        values = {}
        for server in ("rs", "js"):
            xs = [get(r["result"]) for r in rows if r["server"] == server and r["name"] == name]
            xs = [x for x in xs if isinstance(x, (int, float))]
            values[server] = statistics.median(xs) if xs else None
        rs, js = values["rs"], values["js"]
        ratio = "-" if rs is None or not js else "<0.01x" if rs / js < 0.01 else f"{rs / js:.2f}x"
        fmt = lambda v: "-" if v is None else f"{v:,.1f}"
        print(f"{label:50} {fmt(rs):>14} {fmt(js):>12} {ratio:>8}")
    runs = max((sum(1 for r in rows if r["server"] == s and r["name"] == "discovery") for s in ("rs", "js")), default=0)
    print(f"(medians of {runs} runs each; ratio < 1 is better for times and memory, > 1 for rates)")


if __name__ == "__main__":
    main(sys.argv[1])
