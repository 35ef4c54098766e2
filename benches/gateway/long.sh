# shellcheck shell=bash disable=SC2154  # work, gateway_pid, gateway_port are run.sh's
# Sourced by run.sh when LONG=1: the long run. tollgate alone in front of the upstream nginx, wrk
# at CONNECTIONS (one count, 16 by default) for DURATION (10m by default) in consecutive slices of
# SLICE seconds (10) on the same gateway process; after each slice its RPS, p50, p99, errors, the
# gateway's CPU per call and resident memory (from /proc) go into target/gateway-long-run.csv, and
# its latency tail (90.0 to 100.0 percent) into target/gateway-long-run-tails.txt, from which
# plot.py draws LONG_PNG (benches/gateway-long-run.png) and prints the issue's check: the p99 of
# the last minute over the p99 of the second, and the memory after the first slice and the last.
#
# Uses from run.sh: $work, $gateway_pid, $gateway_port, cpu_us.

long_csv="target/gateway-long-run.csv"
long_tails="target/gateway-long-run-tails.txt"
long_png="${LONG_PNG:-benches/gateway-long-run.png}"
plot_venv="target/bench-peers/plot"

# Checks the arguments and installs the plot's matplotlib before anything runs.
long_setup() {
    case "$CONNECTIONS" in
        *[!0-9]*|"") echo "LONG=1 takes one connection count (CONNECTIONS=16)" >&2; exit 1 ;;
    esac
    SLICE="${SLICE:-10}"
    long_seconds="$(python3 - "$DURATION" <<'PY'
import re, sys
m = re.fullmatch(r"(\d+)([smh]?)", sys.argv[1])
if not m:
    sys.exit(f"DURATION is a number of seconds, minutes or hours (10m, 600s, 1h): {sys.argv[1]}")
print(int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)])
PY
)"
    long_slices=$(( long_seconds / SLICE ))
    [ "$long_slices" -ge 1 ] || { echo "DURATION is shorter than one slice ($SLICE s)" >&2; exit 1; }
    if [ ! -f "$plot_venv/.installed" ]; then
        echo "LONG: installing matplotlib into $plot_venv" >&2
        rm -rf "$plot_venv"
        python3 -m venv "$plot_venv"
        "$plot_venv/bin/pip" install -r benches/gateway/peers/requirements-plot.txt > "$plot_venv.log" 2>&1 \
            || { echo "LONG: pip install of the plot's matplotlib failed; see $plot_venv.log" >&2; exit 1; }
        touch "$plot_venv/.installed"
    fi
}

long_run() {
    local threads=$(( CONNECTIONS < 2 ? 1 : 2 )) start i out result cpu_before cpu_after rss_kb
    mkdir -p target
    echo "slice,seconds,rps,p50_ms,p99_ms,requests,errors,cpu_us_per_call,rss_mib" > "$long_csv"
    : > "$long_tails"
    echo "LONG: tollgate at $CONNECTIONS connections for $DURATION, $long_slices slices of $SLICE s" >&2
    printf '%6s %8s %10s %10s %10s %8s %10s\n' slice seconds rps p50_ms p99_ms errors rss_mib
    start="$(date +%s.%N)"
    for i in $(seq "$long_slices"); do
        cpu_before="$(cpu_us)"
        out="$(TOLLGATE_BENCH_QUANTILES=1 wrk -t"$threads" -c"$CONNECTIONS" -d"${SLICE}s" --timeout 30s \
            --latency -s benches/gateway/post.lua "http://127.0.0.1:$gateway_port")"
        cpu_after="$(cpu_us)"
        rss_kb="$(awk '/^VmRSS/ { print $2 }' "/proc/$gateway_pid/status")"
        result="$(echo "$out" | sed -n 's/^RESULT //p')"
        [ -n "$result" ] || { echo "LONG: wrk printed no result in slice $i" >&2; exit 1; }
        echo "$i $(echo "$out" | sed -n 's/^QUANTILES //p')" >> "$long_tails"
        python3 - "$i" "$start" "$(date +%s.%N)" "$result" "$cpu_before" "$cpu_after" "$rss_kb" "$long_csv" <<'PY'
import sys
i, start, now, result, cpu0, cpu1, rss_kb, csv = sys.argv[1:]
r = {k: float(v) for k, v in (f.split("=") for f in result.split())}
cpu = (float(cpu1) - float(cpu0)) / max(r["requests"], 1)
row = [i, f"{float(now) - float(start):.1f}", f"{r['rps']:.1f}", f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}",
       f"{r['requests']:.0f}", f"{r['errors']:.0f}", f"{cpu:.1f}", f"{int(rss_kb) / 1024:.1f}"]
with open(csv, "a") as f:
    f.write(",".join(row) + "\n")
print(f"{row[0]:>6} {row[1]:>8} {row[2]:>10} {row[3]:>10} {row[4]:>10} {row[6]:>8} {row[8]:>10}")
PY
    done
    MPLBACKEND=Agg "$plot_venv/bin/python" benches/gateway/plot.py "$long_csv" "$long_tails" "$long_png" \
        "$CONNECTIONS" "$SLICE"
}
