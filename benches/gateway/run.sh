#!/usr/bin/env bash
# The gateway under load: wrk posting chat requests straight to an nginx that answers a fixed
# chat completion, and through `tollgate serve` in front of the same nginx, in the same run, at
# 1, 16 and 64 connections. Prints RPS, p50 / p99 latency, the p50 the gateway adds, the CPU
# time the gateway spent per call, and the gateway's resident memory after the run; at the end
# one markdown table of every target (RPS, p50, p99, errors, ratios to direct and to tollgate),
# each server's resident memory, and the issue's goals (tollgate / hyper-fwd) per connection count.
# Two floors run beside it: hyper-fwd (hyper and reqwest passing bytes) and hyper-work (the same,
# doing the least per call that the measured configuration asks: key digest, JSON body, tenant
# counters, an 8 MiB moka cache, the answer's usage, a log line;
# crates/tollgate-gateway/benches/forward.rs).
#
#   bash benches/gateway/run.sh                 # 10 s per run
#   PEERS=litellm,portkey bash benches/gateway/run.sh
#                                               # also LiteLLM's proxy and Portkey's gateway (either
#                                               # alone too), installed if missing under
#                                               # target/bench-peers/ from benches/gateway/peers/'s
#                                               # pins, each run alone after the others are stopped;
#                                               # LITELLM_VERSION=x.y.z for another LiteLLM release
#   LONG=1 DURATION=10m CONNECTIONS=16 bash benches/gateway/run.sh
#                                               # the long run: tollgate alone, wrk in consecutive
#                                               # 10-s slices on one gateway process, RPS, p99 and
#                                               # RSS per slice into target/gateway-long-run.csv,
#                                               # plotted into benches/gateway-long-run.png
#   DURATION=30s CONNECTIONS="16" bash benches/gateway/run.sh
#   PROFILE=/tmp/gateway.perf bash benches/gateway/run.sh   # perf record of each tollgate run;
#       perf script -i /tmp/gateway.perf.16 --no-inline | python3 benches/gateway/groups.py <CPU per call>
#       gives its CPU per call by function group
#   CACHE=off bash benches/gateway/run.sh                   # the gateway with its cache off
#   API=anthropic bash benches/gateway/run.sh   # Messages calls to an Anthropic-shaped nginx: the
#                                               # pass-through path, beside the chat one
#   API=responses bash benches/gateway/run.sh   # Responses calls passed through to an nginx that
#                                               # serves /v1/responses; the gateway also measured on
#                                               # chat calls in the same run, and the CPU per call of
#                                               # each compared
#   DATABASE=sqlite bash benches/gateway/run.sh # the records in a SQLite file, the calls' key one
#                                               # of them (made with `tollgate keys create`)
#   DATABASE=postgres DATABASE_URL=postgres://... bash benches/gateway/run.sh
#                                               # ... in that PostgreSQL; also prints the
#                                               # transactions it committed per second
#   (default DATABASE=memory: no database section, the records in memory, a file key)
#   LOGS=on bash benches/gateway/run.sh         # every call recorded: a JSON-lines file and the
#                                               # records' database (the call log's sinks on);
#                                               # LOGS=file or LOGS=database for one of them
#
# For a profile with symbols, build with CARGO_PROFILE_RELEASE_DEBUG=line-tables-only.
# Needs nginx (Debian: nginx-light) and wrk (Debian: wrk); the peers python3's venv and npm, the
# long run's plot python3's venv. Run by hand; CI does not run it.
set -euo pipefail
cd "$(dirname "$0")/../.."

LONG="${LONG:-}"
if [ -n "$LONG" ]; then
    DURATION="${DURATION:-10m}"
    CONNECTIONS="${CONNECTIONS:-16}"
fi
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-1 16 64}"
PEERS="${PEERS:-}"
API="${API:-openai}"
case "$API" in
    openai) role=default ;;
    anthropic) role=claude ;;
    responses) role=responses ;;
    *) echo "API is openai, anthropic or responses" >&2; exit 1 ;;
esac
export TOLLGATE_BENCH_API="$API"
for tool in nginx wrk; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install nginx-light wrk)" >&2; exit 1; }
done
# shellcheck source=benches/gateway/peers.sh
. benches/gateway/peers.sh
peers=()
if [ -n "$PEERS" ]; then
    [ "$API" = openai ] || { echo "PEERS runs with API=openai (the peers are measured on chat calls)" >&2; exit 1; }
    [ -z "$LONG" ] || { echo "LONG=1 runs tollgate alone: no PEERS" >&2; exit 1; }
    IFS=, read -r -a peers <<< "$PEERS"
    # Installed first, so that a peer that cannot be is known before anything is measured.
    for peer in "${peers[@]}"; do peer_install "$peer"; done
fi
if [ -n "$LONG" ]; then
    # shellcheck source=benches/gateway/long.sh
    . benches/gateway/long.sh
    long_setup
fi

# TOLLGATE_BIN runs another build (to compare two builds in one session).
tollgate="${TOLLGATE_BIN:-}"
if [ -z "$tollgate" ]; then
    cargo build --quiet --release -p tollgate-gateway --bin tollgate
    tollgate="${CARGO_TARGET_DIR:-target}/release/tollgate"
fi

work="$(mktemp -d)"
pids=()
peer_pid=""
# Everything started is gone when the script ends: asked to stop, then killed after 10 s.
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$peer_pid" ]; then kill -KILL -- "-$peer_pid" 2>/dev/null || true; fi
    for _ in $(seq 100); do
        kill -0 "${pids[@]}" 2>/dev/null || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# One nginx worker named $1, in the foreground, its files under $work, serving the `http` block's
# rest from standard input.
start_nginx() {
    local name="$1"
    mkdir -p "$work/$name"
    {
        cat <<CONF
worker_processes 1;
daemon off;
pid $work/$name/nginx.pid;
error_log $work/$name/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/$name/body;
    proxy_temp_path $work/$name/proxy;
    fastcgi_temp_path $work/$name/fastcgi;
    uwsgi_temp_path $work/$name/uwsgi;
    scgi_temp_path $work/$name/scgi;
    keepalive_requests 1000000;
CONF
        cat
        echo "}"
    } > "$work/$name/nginx.conf"
    nginx -c "$work/$name/nginx.conf" -e "$work/$name/error.log" &
    pids+=($!)
}

# The upstream: one nginx worker answering every chat request with the same completion, and
# every Messages request with the same message (the same text, and Anthropic's usage with its
# cache counts).
answer='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"The weather is fine today, with a light breeze from the west."},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":13,"total_tokens":27}}'
response='{"id":"resp_bench","object":"response","created_at":1700000000,"status":"completed","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":32,"model":"bench-model","output":[{"id":"msg_bench","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","annotations":[],"text":"The weather is fine today, with a light breeze from the west."}]}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":false,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{"input_tokens":14,"input_tokens_details":{"cached_tokens":0},"output_tokens":13,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":27},"user":null,"metadata":{}}'
message='{"id":"msg_bench","type":"message","role":"assistant","model":"bench-claude","content":[{"type":"text","text":"The weather is fine today, with a light breeze from the west."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":14,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":13}}'
nginx_port="$(free_port)"
start_nginx upstream <<CONF
    server {
        listen 127.0.0.1:$nginx_port;
        location = /v1/chat/completions {
            default_type application/json;
            return 200 '$answer';
        }
        location = /v1/messages {
            default_type application/json;
            return 200 '$message';
        }
        location = /v1/responses {
            default_type application/json;
            return 200 '$response';
        }
    }
CONF

# The floor: a second nginx worker as a bare reverse proxy (keep-alive to the upstream, nothing
# parsed or checked): what any proxy costs on this machine, where the load generator, the proxy
# and the upstream share the cores.
if [ -z "$LONG" ]; then
proxy_port="$(free_port)"
start_nginx proxy <<CONF
    upstream up { server 127.0.0.1:$nginx_port; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$proxy_port;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
CONF

# The gateway's own HTTP stack with nothing on it: hyper's server and reqwest's client passing
# bodies through (crates/tollgate-gateway/benches/forward.rs), built in the release profile as
# the gateway is (whole-program optimisation included), not the bench profile.
forward="$(cargo build --quiet --release -p tollgate-gateway --bench forward --message-format=json \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m["target"]["name"] == "forward": print(m["executable"])')"
forward_port="$(free_port)"
"$forward" "127.0.0.1:$forward_port" "http://127.0.0.1:$nginx_port" > "$work/forward.out" &
forward_pid=$!
pids+=("$forward_pid")
fi

# The gateway: a key, tenant limits and a budget, the cache (every prompt is new: the miss
# path), retry, breaker and health, all on.
key_hash="$(printf 'tg-bench\n' | "$tollgate" keys hash --stdin)"
gateway_port="$(free_port)"
case "${DATABASE:-memory}" in
    memory) database="" ;;
    sqlite) database="database: { url: \"sqlite://$work/tollgate.db\" }" ;;
    postgres)
        [ -n "${DATABASE_URL:-}" ] || { echo "DATABASE=postgres needs DATABASE_URL" >&2; exit 1; }
        database="database: { url_env: DATABASE_URL }" ;;
    *) echo "DATABASE is memory, sqlite or postgres" >&2; exit 1 ;;
esac
case "${LOGS:-off}" in
    off) logs="" ;;
    on) logs="logs: { sinks: [ { kind: file, path: \"$work/calls.jsonl\" }, { kind: database } ] }" ;;
    file) logs="logs: { sinks: [ { kind: file, path: \"$work/calls.jsonl\" } ] }" ;;
    database) logs="logs: { sinks: [ { kind: database } ] }" ;;
    *) echo "LOGS is off, on, file or database" >&2; exit 1 ;;
esac
cat > "$work/tollgate.yaml" <<CONF
providers:
  up: { kind: openai, base_url: "http://127.0.0.1:$nginx_port/v1" }
  anthropic: { kind: anthropic, base_url: "http://127.0.0.1:$nginx_port", api_key_env: TOLLGATE_BENCH_ANTHROPIC_KEY }
  resp: { kind: openai, base_url: "http://127.0.0.1:$nginx_port/v1", responses_api: true }
roles:
  default: { provider: up, model: bench-model }
  claude: { provider: anthropic, model: bench-claude }
  responses: { provider: resp, model: bench-model }
pricing:
  bench-model: { input: "0.15", output: "0.60" }
  bench-claude: { input: "3.00", output: "15.00" }
caching: $( [ "${CACHE:-on}" = off ] && echo false || echo '{ store: memory, max_bytes: 8388608 }' )
rate_limiting:
  tenants:
    default: { per_minute: 100000000, tokens_per_minute: 1000000000, cost_per_day: "1000000" }
keys:
  bench: { hash: "$key_hash", tenant: bench }
gateway:
  listen: 127.0.0.1:$gateway_port
$database
$logs
CONF
export TOLLGATE_BENCH_KEY=tg-bench
if [ -n "$database" ]; then
    # The calls' key is a record: found in memory beside the file's, as every record key is.
    # (A PostgreSQL kept from an earlier run has the team already.)
    "$tollgate" teams create bench --config "$work/tollgate.yaml" >/dev/null 2>&1 || true
    TOLLGATE_BENCH_KEY="$("$tollgate" keys create --name bench --team bench --config "$work/tollgate.yaml" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')"
fi
# The database's committed transactions so far (PostgreSQL only).
commits() {
    [ "${DATABASE:-memory}" = postgres ] || { echo 0; return; }
    python3 - <<'PY'
import os, subprocess
url = os.environ["DATABASE_URL"]
out = subprocess.run(["psql", url, "-tAc", "SELECT sum(xact_commit) FROM pg_stat_database"], capture_output=True, text=True)
print(out.stdout.strip() or 0)
PY
}
TOLLGATE_BENCH_ANTHROPIC_KEY=bench "$tollgate" serve --config "$work/tollgate.yaml" --log-level warn \
    > "$work/tollgate.out" 2> "$work/tollgate.err" &
gateway_pid=$!
pids+=("$gateway_pid")
for _ in $(seq 100); do
    grep -q listening "$work/tollgate.out" 2>/dev/null && curl -sf "http://127.0.0.1:$nginx_port/v1/chat/completions" -d '{}' >/dev/null && break
    sleep 0.1
done
export TOLLGATE_BENCH_ROLE="$role"

# The floor under what the measured configuration must do: hyper-fwd doing, per call, the least
# of it with the libraries the gateway keeps (the key's digest looked up, the body read as JSON,
# a tenant's counters, an 8 MiB moka cache keyed by SHA-256, the answer's usage read, a JSON line
# per call to a file; crates/tollgate-gateway/benches/forward.rs, FORWARD_WORK).
if [ -z "$LONG" ]; then
work_port="$(free_port)"
FORWARD_WORK="$TOLLGATE_BENCH_KEY" "$forward" "127.0.0.1:$work_port" "http://127.0.0.1:$nginx_port" > "$work/forward-work.out" &
work_pid=$!
pids+=("$work_pid")
fi

# A process's CPU time so far (the gateway's by default), user and system, in microseconds.
cpu_us() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) * 1000000 / hz }' "/proc/${1:-$gateway_pid}/stat"
}

# wrk's timeout is 30 s rather than 2: a slow peer at 64 connections queues calls for seconds.
run() { # url connections -> "rps p50 p99 requests errors"
    local threads=$(( $2 < 2 ? 1 : 2 ))
    wrk -t"$threads" -c"$2" -d"$DURATION" --timeout 30s --latency -s benches/gateway/post.lua "$1" \
        | sed -n 's/^RESULT //p'
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# Every measurement, for the table at the end: target, connections, then run's fields.
record() { echo "$1 $2 $3" >> "$work/results"; }

if [ -n "$LONG" ]; then
    long_run
    exit 0
fi

# Warm both up (connections, the allocator, the limiter's tables).
run "http://127.0.0.1:$nginx_port" 16 >/dev/null
run "http://127.0.0.1:$proxy_port" 16 >/dev/null
run "http://127.0.0.1:$forward_port" 16 >/dev/null
run "http://127.0.0.1:$work_port" 16 >/dev/null
run "http://127.0.0.1:$gateway_port" 16 >/dev/null

printf '%-12s %-12s %10s %10s %10s %8s\n' connections target rps p50_ms p99_ms errors
for c in $CONNECTIONS; do
    direct="$(run "http://127.0.0.1:$nginx_port" "$c")"
    proxy="$(run "http://127.0.0.1:$proxy_port" "$c")"
    forward_before="$(cpu_us "$forward_pid")"
    bare="$(run "http://127.0.0.1:$forward_port" "$c")"
    forward_after="$(cpu_us "$forward_pid")"
    work_before="$(cpu_us "$work_pid")"
    floor="$(run "http://127.0.0.1:$work_port" "$c")"
    work_after="$(cpu_us "$work_pid")"
    if [ -n "${PROFILE:-}" ]; then
        # DWARF call stacks: benches/gateway/groups.py groups samples by their callers.
        perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$gateway_pid" -o "$PROFILE.$c" 2>/dev/null &
        perf_pid=$!
    fi
    cpu_before="$(cpu_us)"
    commits_before="$(commits)"
    seconds_before="$(date +%s.%N)"
    through="$(run "http://127.0.0.1:$gateway_port" "$c")"
    cpu_after="$(cpu_us)"
    if [ "$API" = responses ]; then
        # The chat pass-through in the same run, as the peer of the Responses one.
        chat_before="$(cpu_us)"
        chat="$(TOLLGATE_BENCH_API=openai TOLLGATE_BENCH_ROLE=default run "http://127.0.0.1:$gateway_port" "$c")"
        python3 - "$chat" "$chat_before" "$(cpu_us)" "$through" "$cpu_before" "$cpu_after" <<'PY'
import sys
chat, through = ({k: float(v) for k, v in (f.split("=") for f in r.split())} for r in (sys.argv[1], sys.argv[4]))
chat_cpu = (float(sys.argv[3]) - float(sys.argv[2])) / max(chat["requests"], 1)
responses_cpu = (float(sys.argv[6]) - float(sys.argv[5])) / max(through["requests"], 1)
print(f"             tollgate chat: {chat['rps']:.0f} rps, {chat_cpu:.1f} us CPU per call, {chat['errors']:.0f} errors; "
      f"responses / chat CPU per call: {responses_cpu / chat_cpu:.2f}x")
PY
    fi
    if [ "${DATABASE:-memory}" = postgres ]; then
        python3 -c "import sys; print(f'             PostgreSQL transactions committed per second: {(float(sys.argv[2]) - float(sys.argv[1])) / (float(sys.argv[4]) - float(sys.argv[3])):.1f} (the ledger, the records\' version poll and the keys\' last use)')" \
            "$commits_before" "$(commits)" "$seconds_before" "$(date +%s.%N)"
    fi
    if [ -n "${PROFILE:-}" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    for pair in "direct:$direct" "nginx-proxy:$proxy" "hyper-fwd:$bare" "hyper-work:$floor" "tollgate:$through"; do
        name="${pair%%:*}"; r="${pair#*:}"
        record "$name" "$c" "$r"
        printf '%-12s %-12s %10s %10s %10s %8s\n' "$c" "$name" "$(field "$r" rps)" \
            "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" "$(field "$r" errors)"
    done
    python3 - "$direct" "$proxy" "$bare" "$through" "$cpu_before" "$cpu_after" "$work/cpu" "$c" \
        "$forward_before" "$forward_after" "$floor" "$work_before" "$work_after" <<'PY'
import sys
direct, proxy, bare, through = ({k: float(v) for k, v in (f.split("=") for f in r.split())} for r in sys.argv[1:5])
floor = {k: float(v) for k, v in (f.split("=") for f in sys.argv[11].split())}
cpu = float(sys.argv[6]) - float(sys.argv[5])
forward = (float(sys.argv[10]) - float(sys.argv[9])) / max(bare["requests"], 1)
work = (float(sys.argv[13]) - float(sys.argv[12])) / max(floor["requests"], 1)
with open(sys.argv[7], "a") as f:
    f.write(f"{sys.argv[8]} {cpu / max(through['requests'], 1):.1f} {forward:.1f} {work:.1f}\n")
print(f"             tollgate CPU per call: {cpu / max(through['requests'], 1):.1f} us "
      f"({through['requests']:.0f} calls); hyper-fwd's: {forward:.1f} us; hyper-work's: {work:.1f} us")
print(f"             RPS / direct: nginx-proxy {proxy['rps'] / direct['rps']:.2f}x, "
      f"hyper-fwd {bare['rps'] / direct['rps']:.2f}x, tollgate {through['rps'] / direct['rps']:.2f}x; "
      f"tollgate / hyper-fwd {through['rps'] / bare['rps']:.2f}x")
print(f"             p50 added over direct: nginx-proxy {proxy['p50_ms'] - direct['p50_ms']:.3f} ms, "
      f"hyper-fwd {bare['p50_ms'] - direct['p50_ms']:.3f} ms, tollgate {through['p50_ms'] - direct['p50_ms']:.3f} ms")
PY
done
rss_kb="$(awk '/^VmRSS/ { print $2 }' "/proc/$gateway_pid/status")"
hwm_kb="$(awk '/^VmHWM/ { print $2 }' "/proc/$gateway_pid/status")"
echo "tollgate resident memory after the run: $((rss_kb / 1024)) MiB (peak $((hwm_kb / 1024)) MiB)"

# Each server's memory after its runs (the process and its children), then all but the upstream
# stopped: the peers run alone with it.
{
    echo "direct $(tree_memory "${pids[0]}")"
    echo "nginx-proxy $(tree_memory "${pids[1]}")"
    echo "hyper-fwd $(tree_memory "${pids[2]}")"
    echo "hyper-work $(tree_memory "$work_pid")"
    echo "tollgate $(tree_memory "$gateway_pid")"
} >> "$work/memory"
for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done

for peer in "${peers[@]}"; do measure_peer "$peer"; done

echo
python3 benches/gateway/table.py "$work" "$CONNECTIONS" litellm="$litellm_version" portkey="$portkey_version"
