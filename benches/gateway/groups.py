#!/usr/bin/env python3
"""CPU per call by function group, from a profile of the gateway.

    PROFILE=/tmp/gateway.perf CONNECTIONS=16 bash benches/gateway/run.sh
    perf script -i /tmp/gateway.perf.16 --no-inline | python3 benches/gateway/groups.py 55.0

Reads `perf script` samples with their call stacks (`perf record --call-graph dwarf`, which
run.sh's PROFILE mode takes) and gives each sample to one group: the kernel and the allocator by
the innermost frame; otherwise the innermost frame that names a group decides, so serde_json
under the door's parse is the door's, and hyper under reqwest is the HTTP client's. The argument
(the gateway's CPU per call in microseconds, which run.sh prints) turns shares into microseconds.
"""
import collections
import re
import sys

LEAF = [
    ("kernel", re.compile(r"\[kernel|kallsyms|\[unknown\] \(\[kernel")),
    ("allocator", re.compile(
        r"\b(_?mi_\w+|__rust_(alloc|dealloc|realloc)\w*|malloc|free|cfree|_int_malloc|_int_free|realloc)\b")),
]
# The innermost frame that matches one of these decides the sample's group; library frames that
# match none (serde_json, http, bytes, core, alloc, hashbrown) are passed over for their caller.
RULES = [
    ("call log", r"tollgate_gateway::logs|CallRecorder|tollgate::log::|tollgate_log::"),
    ("metrics and spans", r"\bmetrics(_util|_exporter_prometheus)?::|\btracing(_core|_subscriber|_opentelemetry)?::"
                          r"|tollgate_gateway::otel|call_metrics|tollgate_gateway::metrics|opentelemetry"),
    ("door parse", r"decode_request|as tollgate_gateway::call::FrontDoor>::parse"),
    ("door answer", r"encode_answer|as tollgate_gateway::call::FrontDoor>::answer|tollgate_gateway::sse"),
    ("key lookup", r"find_key|KeyTable|secret::digest|presented_key|tollgate_gateway::keys"),
    ("cache key and store", r"tollgate_cache::|moka::"),
    ("limiter and budget", r"tollgate_ratelimit::|tollgate::stack::billing|tollgate::cost::|tollgate_control::ledger"
                           r"|tollgate_gateway::degrade"),
    ("retry / breaker / health", r"tollgate_retry::|tollgate_circuit_breaker::|tollgate_health::"),
    ("router", r"tollgate_router::"),
    ("provider encode / decode", r"tollgate_providers::|tollgate_wire::|tollgate_core::snapshot"),
    ("HTTP out (reqwest, hyper's client)", r"reqwest::|hyper_util::client|hyper::client|role::Client|\burl::|\bidna::"),
    ("HTTP in (hyper's server, axum)", r"\bhyper::|hyper_util::|\baxum::|httparse"),
    ("gateway call (key, model, headers)", r"tollgate_gateway::|tollgate::"),
    ("records (control plane)", r"tollgate_control::|sqlx|sqlite"),
    ("runtime (tokio)", r"\btokio::|\bmio::"),
]
RULES = [(name, re.compile(pattern)) for name, pattern in RULES]


def group(frames):
    if not frames:
        return "other"
    for name, pattern in LEAF:
        if pattern.search(frames[0]):
            return name
    for frame in frames:
        for name, pattern in RULES:
            if pattern.search(frame):
                return name
    return "other (libc, std)"


def samples(lines):
    frames, inside = [], False
    for line in lines:
        if not line.strip():
            if inside:
                yield frames
            frames, inside = [], False
        elif line[0] not in " \t":
            frames, inside = [], True
        else:
            parts = line.strip().split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else parts[0])
    if inside:
        yield frames


def main():
    cpu = float(sys.argv[1]) if len(sys.argv) > 1 else None
    counts = collections.Counter(group(frames) for frames in samples(sys.stdin))
    total = sum(counts.values()) or 1
    print("| group | share |" + (" µs per call |" if cpu else ""))
    print("|---|---:|" + ("---:|" if cpu else ""))
    for name, n in counts.most_common():
        print(f"| {name} | {n / total * 100:.1f} % |" + (f" {n / total * cpu:.1f} |" if cpu else ""))
    print(f"| all ({total} samples) | 100 % |" + (f" {cpu:.1f} |" if cpu else ""))


if __name__ == "__main__":
    main()
