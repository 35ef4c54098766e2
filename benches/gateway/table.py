"""The gateway bench's one table, in markdown, from what run.sh recorded in its work folder.

    python3 benches/gateway/table.py WORK "CONNECTIONS" litellm=VERSION portkey=VERSION

WORK/results: "target connections rps=.. p50_ms=.. p99_ms=.. requests=.. errors=.." a line;
WORK/memory: "target rss_kib pss_kib processes"; WORK/cpu: "connections tollgate_us_per_call
hyper_fwd_us_per_call hyper_work_us_per_call".
"""

import os
import sys

ORDER = ["direct", "nginx-proxy", "hyper-fwd", "hyper-work", "tollgate", "litellm", "portkey"]


def read(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def main():
    work, connections = sys.argv[1], sys.argv[2].split()
    versions = dict(arg.split("=", 1) for arg in sys.argv[3:])
    results = {}
    for target, c, *fields in read(os.path.join(work, "results")):
        results[(target, c)] = {k: float(v) for k, v in (f.split("=") for f in fields)}
    memory = {target: (int(rss), int(pss), int(n)) for target, rss, pss, n in read(os.path.join(work, "memory"))}
    cpu = {c: [float(us) for us in per_call] for c, *per_call in read(os.path.join(work, "cpu"))}
    targets = [t for t in ORDER if any((t, c) in results for c in connections)]

    def name(t):
        return f"{t} {versions[t]}" if t in versions else t

    def ratio(a, b):
        if b <= 0:
            return "—"
        return f"{a / b:.2f}×" if a / b >= 0.1 else f"{a / b:.2g}×"

    def rps(x):
        return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"

    print("| connections | target | RPS | p50 | p50 added | p99 | errors | RPS ÷ direct | RPS ÷ tollgate "
          "| tollgate ÷ it |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in connections:
        direct = results.get(("direct", c))
        tollgate = results.get(("tollgate", c))
        for t in targets:
            r = results.get((t, c))
            if r is None:
                continue
            added = f"{r['p50_ms'] - direct['p50_ms']:.3f} ms" if direct and t != "direct" else "—"
            print(f"| {c} | {name(t)} | {rps(r['rps'])} | {r['p50_ms']:.3f} ms | {added} | {r['p99_ms']:.3f} ms "
                  f"| {r['errors']:.0f} | {ratio(r['rps'], direct['rps']) if direct else '—'} "
                  f"| {ratio(r['rps'], tollgate['rps']) if tollgate else '—'} "
                  f"| {ratio(tollgate['rps'], r['rps']) if tollgate and t != 'tollgate' else '—'} |")

    print()
    print("| server | processes | RSS after its runs | PSS |")
    print("|---|---:|---:|---:|")
    for t in targets:
        if t in memory:
            rss, pss, n = memory[t]
            print(f"| {name(t)} | {n} | {rss / 1024:.0f} MiB | {pss / 1024:.0f} MiB |")

    print()
    print("| connections | tollgate ÷ hyper-fwd, RPS (goal ≥ 0.8×) | tollgate ÷ hyper-work, RPS "
          "| p50 added over direct, tollgate ÷ hyper-fwd (goal ≤ 1.3× at 1) | tollgate ÷ hyper-work, p50 added "
          "| tollgate CPU per call (goal ≤ 50 µs) | hyper-fwd CPU per call | hyper-work CPU per call |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")

    def added(a, b):
        x, y = a["p50_ms"] - direct["p50_ms"], b["p50_ms"] - direct["p50_ms"]
        return f"{x / y:.2f}× ({x:.3f} / {y:.3f} ms)" if y > 0 else f"— ({x:.3f} / {y:.3f} ms)"

    for c in connections:
        direct, bare, floor, tollgate = (results.get((t, c)) for t in ("direct", "hyper-fwd", "hyper-work", "tollgate"))
        if not (direct and bare and floor and tollgate):
            continue
        us = [f"{x:.1f} µs" for x in cpu.get(c, [])] + ["—", "—", "—"]
        print(f"| {c} | {ratio(tollgate['rps'], bare['rps'])} | {ratio(tollgate['rps'], floor['rps'])} "
              f"| {added(tollgate, bare)} | {added(tollgate, floor)} | {us[0]} | {us[1]} | {us[2]} |")


if __name__ == "__main__":
    main()
