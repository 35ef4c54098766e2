# shellcheck shell=bash disable=SC2154  # work, nginx_port are run.sh's
# Sourced by run.sh: the peers (LiteLLM's proxy, Portkey's gateway), installed if missing under
# target/bench-peers/ from the pins in benches/gateway/peers/, each started alone in front of the
# same upstream nginx, and stopped (every process of it gone) before the next one starts; and the
# resident memory of a server's whole process tree.
#
# Uses from run.sh: $work, $nginx_port, free_port. A peer that cannot be installed or started ends
# the run with a message naming it.

peers_dir="target/bench-peers"
pins="benches/gateway/peers"

peer_fail() { # name message [log]
    echo "PEERS: $1: $2" >&2
    if [ -n "${3:-}" ] && [ -f "$3" ]; then
        echo "--- last lines of $3:" >&2
        tail -n 20 "$3" >&2
    fi
    exit 1
}

# LITELLM_VERSION installs another release (unpinned dependencies) beside the pinned one.
litellm_pinned="$(sed -n 's/^litellm\[proxy\]==//p' "$pins/requirements-litellm.txt")"
litellm_version="${LITELLM_VERSION:-$litellm_pinned}"
portkey_version="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["dependencies"]["@portkey-ai/gateway"])' "$pins/package.json")"

peer_version() {
    case "$1" in
        litellm) echo "$litellm_version" ;;
        portkey) echo "$portkey_version" ;;
    esac
}

# A finished install leaves a stamp; one cut short is done again.
peer_install() {
    local name="$1" dir
    case "$name" in
        litellm)
            dir="$peers_dir/litellm-$litellm_version"
            [ -f "$dir/.installed" ] && return
            echo "PEERS: installing LiteLLM's proxy $litellm_version into $dir (a few minutes)" >&2
            rm -rf "$dir"
            python3 -m venv "$dir" || peer_fail litellm "python3 -m venv failed"
            if [ "$litellm_version" = "$litellm_pinned" ]; then
                "$dir/bin/pip" install -r "$pins/requirements-litellm.txt" > "$dir.log" 2>&1 \
                    || { rm -rf "$dir"; peer_fail litellm "pip install -r $pins/requirements-litellm.txt failed" "$dir.log"; }
            else
                "$dir/bin/pip" install "litellm[proxy]==$litellm_version" > "$dir.log" 2>&1 \
                    || { rm -rf "$dir"; peer_fail litellm "pip install 'litellm[proxy]==$litellm_version' failed" "$dir.log"; }
            fi
            touch "$dir/.installed" ;;
        portkey)
            dir="$peers_dir/portkey-$portkey_version"
            [ -f "$dir/.installed" ] && return
            echo "PEERS: installing Portkey's gateway $portkey_version into $dir" >&2
            rm -rf "$dir"
            mkdir -p "$dir"
            cp "$pins/package.json" "$pins/package-lock.json" "$dir/"
            # Its one install script (patch-package) has no patches to apply in the published package.
            (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund) > "$dir.log" 2>&1 \
                || { rm -rf "$dir"; peer_fail portkey "npm ci of @portkey-ai/gateway@$portkey_version failed" "$dir.log"; }
            touch "$dir/.installed" ;;
        *) echo "PEERS names litellm and portkey, comma-separated (got '$name')" >&2; exit 1 ;;
    esac
}

# Every process under $1, itself included, one pid a line.
tree_pids() {
    python3 - "$1" <<'PY'
import os, sys
children = {}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
todo, seen = [int(sys.argv[1])], []
while todo:
    pid = todo.pop()
    if os.path.exists(f"/proc/{pid}"):
        seen.append(pid)
        todo.extend(children.get(pid, []))
print("\n".join(map(str, seen)))
PY
}

# "rss_kib pss_kib processes" of the tree under $1: RSS summed counts the pages forked workers
# share once per worker; PSS splits them between the processes.
tree_memory() {
    # shellcheck disable=SC2046
    python3 - $(tree_pids "$1") <<'PY'
import sys
rss = pss = n = 0
for pid in sys.argv[1:]:
    try:
        with open(f"/proc/{pid}/status") as f:
            rss += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        with open(f"/proc/{pid}/smaps_rollup") as f:
            pss += next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
        n += 1
    except (OSError, StopIteration):
        pass
print(rss, pss, n)
PY
}

# Stops the process group led by $1 (SIGTERM, then SIGKILL after 30 s) and waits until none of its
# processes is left, so that the next target runs alone.
stop_tree() {
    local pid="$1" left
    left="$(tree_pids "$pid")"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do
        left="$(for p in $left; do
            if [ -e "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then echo "$p"; fi
        done)"
        [ -z "$left" ] && break
        sleep 0.1
    done
    if [ -n "$left" ]; then
        echo "PEERS: $(echo "$left" | wc -w) process(es) of $pid still up after 30 s: SIGKILL" >&2
        kill -KILL -- "-$pid" 2>/dev/null || true
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Starts peer $1 in its own process group; sets peer_pid, peer_port, and the request's
# environment for post.lua (peer_env). Waits until it answers a chat call through nginx.
peer_start() {
    local name="$1" dir log
    peer_port="$(free_port)"
    log="$work/$name.log"
    case "$name" in
        litellm)
            dir="$peers_dir/litellm-$litellm_version"
            # One model on the upstream nginx; a master key (checked on every call, as tollgate
            # checks its key); no database, no callbacks, the model cost map read from the package
            # rather than fetched.
            cat > "$work/litellm.yaml" <<CONF
model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/bench-model
      api_base: http://127.0.0.1:$nginx_port/v1
      api_key: sk-bench-upstream
litellm_settings:
  callbacks: []
  success_callback: []
  failure_callback: []
general_settings:
  master_key: sk-bench-litellm
CONF
            LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
                setsid "$dir/bin/litellm" --config "$work/litellm.yaml" --host 127.0.0.1 \
                --port "$peer_port" --num_workers 2 > "$log" 2>&1 < /dev/null &
            peer_pid=$!
            peer_env=(TOLLGATE_BENCH_KEY=sk-bench-litellm TOLLGATE_BENCH_ROLE=bench-model) ;;
        portkey)
            dir="$peers_dir/portkey-$portkey_version"
            # No config file: Portkey routes each call by its headers (post.lua adds them).
            setsid node "$dir/node_modules/@portkey-ai/gateway/build/start-server.js" \
                "--port=$peer_port" --headless > "$log" 2>&1 < /dev/null &
            peer_pid=$!
            peer_env=(TOLLGATE_BENCH_KEY=sk-bench-upstream TOLLGATE_BENCH_ROLE=bench-model
                "TOLLGATE_BENCH_PORTKEY_HOST=http://127.0.0.1:$nginx_port/v1") ;;
    esac
    local headers=(-H 'Content-Type: application/json')
    if [ "$name" = litellm ]; then headers+=(-H 'Authorization: Bearer sk-bench-litellm'); fi
    if [ "$name" = portkey ]; then
        headers+=(-H 'Authorization: Bearer sk-bench-upstream' -H 'x-portkey-provider: openai'
            -H "x-portkey-custom-host: http://127.0.0.1:$nginx_port/v1")
    fi
    # Ready when it answers a chat call through nginx; LiteLLM also when both workers have said
    # so (each logs "Proxy initialized" once it has read the config; the first may answer alone).
    local answer="" deadline=$((SECONDS + 300)) answered=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        [ -e "/proc/$peer_pid" ] || peer_fail "$name" "exited while starting" "$log"
        if [ -z "$answered" ]; then
            answer="$(curl -s -m 5 "${headers[@]}" "http://127.0.0.1:$peer_port/v1/chat/completions" \
                -d '{"model":"bench-model","max_tokens":32,"messages":[{"role":"user","content":"warm-up"}]}' || true)"
            case "$answer" in *"light breeze"*) answered=$SECONDS ;; esac
        fi
        if [ -n "$answered" ]; then
            [ "$name" != litellm ] && return
            [ "$(grep -c 'Proxy initialized' "$log" || true)" -ge 2 ] && return
            if [ $((SECONDS - answered)) -ge 60 ]; then
                echo "PEERS: litellm answers, but its log does not show both workers started; going on" >&2
                return
            fi
        fi
        sleep 0.2
    done
    stop_tree "$peer_pid"
    peer_fail "$name" "no chat completion through it after 300 s (last answer: ${answer:0:300})" "$log"
}

# Peer $1 alone: started, warmed up (16 connections for DURATION), measured at each of CONNECTIONS,
# its memory read, stopped. Uses run.sh's run, record and field.
measure_peer() {
    local name="$1" url c r
    echo "PEERS: $name $(peer_version "$name"): starting" >&2
    peer_start "$name"
    url="http://127.0.0.1:$peer_port"
    (export "${peer_env[@]}"; run "$url" 16 >/dev/null)
    for c in $CONNECTIONS; do
        r="$(export "${peer_env[@]}"; run "$url" "$c")"
        [ -n "$r" ] || peer_fail "$name" "wrk printed no result at $c connections" "$work/$name.log"
        record "$name" "$c" "$r"
        printf '%-12s %-12s %10s %10s %10s %8s\n' "$c" "$name" "$(field "$r" rps)" \
            "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" "$(field "$r" errors)"
    done
    echo "$name $(tree_memory "$peer_pid")" >> "$work/memory"
    stop_tree "$peer_pid"
    peer_pid=""
}
