"""The long run's plot and check (run by long.sh with matplotlib's venv).

    plot.py CSV TAILS PNG CONNECTIONS SLICE_SECONDS

CSV has a row per slice (slice, seconds, rps, p50_ms, p99_ms, requests, errors, cpu_us_per_call,
rss_mib); TAILS a line per slice: its number, then its latency in ms at 90.0, 90.1, ... 100.0
percent. A minute's p99 is the p99 of its slices' calls together: each slice's tail weighted by its
calls (wrk gives percentiles, not the calls, so slices cannot simply be pooled; their p99s averaged
would not be the minute's).
"""

import csv
import sys

import matplotlib.pyplot as plt

PROBS = [0.90 + j / 1000 for j in range(101)]


def cdf(tail, x):
    """The share of a slice's calls at or below x ms, read from its tail (0.90 below the tail)."""
    share = 0.90
    for p, v in zip(PROBS, tail):
        if v <= x:
            share = p
        else:
            break
    return share


def pooled_p99(slices):
    """slices: [(calls, tail)] -> the p99 of all their calls, to the tail's 0.1 % resolution."""
    total = sum(calls for calls, _ in slices)
    for x in sorted({v for _, tail in slices for v in tail}):
        if sum(calls * cdf(tail, x) for calls, tail in slices) >= 0.99 * total:
            return x
    return max(tail[-1] for _, tail in slices)


def main():
    csv_path, tails_path, png, connections, slice_s = sys.argv[1:6]
    slice_s = int(slice_s)
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    tails = {}
    with open(tails_path) as f:
        for line in f:
            i, *values = line.split()
            tails[i] = [float(v) for v in values]

    minutes = {}
    for row in rows:
        minute = (int(row["slice"]) - 1) * slice_s // 60
        minutes.setdefault(minute, []).append((float(row["requests"]), tails[row["slice"]]))
    per_minute = {m: pooled_p99(s) for m, s in sorted(minutes.items())}

    t = [float(r["seconds"]) / 60 for r in rows]
    p99 = [float(r["p99_ms"]) for r in rows]
    rss = [float(r["rss_mib"]) for r in rows]
    rps = [float(r["rps"]) for r in rows]
    errors = sum(int(r["errors"]) for r in rows)

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    top.plot(t, p99, marker=".", linewidth=1, label=f"p99 of each {slice_s}-s slice")
    top.hlines(list(per_minute.values()), list(per_minute), [min(m + 1, t[-1]) for m in per_minute],
               colors="tab:red", linewidth=2, label="p99 of each minute")
    top.set_ylabel("p99 latency (ms)")
    top.set_ylim(bottom=0)
    top.legend(loc="lower right")
    top.grid(alpha=0.3)
    bottom.plot(t, rss, marker=".", linewidth=1, color="tab:green")
    bottom.set_ylabel("tollgate RSS (MiB)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("minutes")
    bottom.grid(alpha=0.3)
    fig.suptitle(f"tollgate serve, wrk at {connections} connections for {t[-1]:.0f} min "
                 f"({sum(rps) / len(rps):,.0f} RPS on average, {errors} errors)")
    fig.tight_layout()
    fig.savefig(png, dpi=100)

    print("p99 per minute (ms): " + ", ".join(f"{p:.3f}" for p in per_minute.values()))
    if len(per_minute) >= 2:
        second, last = per_minute[1], per_minute[max(per_minute)]
        verdict = "met" if last <= 1.2 * second else "not met"
        print(f"p99 of the last minute ÷ p99 of the second: {last:.3f} / {second:.3f} ms = "
              f"{last / second:.2f}× (goal ≤ 1.2×: {verdict})")
    else:
        print("p99 of the last minute ÷ p99 of the second: needs at least two minutes")
    print(f"RSS after the first slice {rss[0]:.1f} MiB, after the last {rss[-1]:.1f} MiB "
          f"(max {max(rss):.1f} MiB); {errors} errors")
    print(f"wrote {png} and {csv_path}")


if __name__ == "__main__":
    main()
