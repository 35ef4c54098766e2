#!/usr/bin/env bash
# Runs every test that starts a real Redis RUNS times (default 10) while a busy loop holds each
# core, and says how often each test failed. For tests that pass alone and fail when the machine
# is loaded, as CI's two cores are when everything runs at once.
#
#   bash scripts/redis-soak.sh [RUNS]
#
# Needs what the README's test command needs for Redis (redis-server, redis-cli). The tests are
# built first, without load; a run's full output is kept in target/redis-soak/.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
export TOLLGATE_REQUIRE_REDIS=1
out=target/redis-soak
mkdir -p "$out"
rm -f "$out"/run-*.log

# package: its test targets that start Redis
targets=(
  "tollgate-ratelimit: redis redis_failover redis_processes one_api"
  "tollgate-cache: redis"
  "tollgate-health: health"
  "tollgate-testkit: fixtures"
  "tollgate: config_redis metrics"
  "tollgate-gateway: redis budgets"
)
args() {
  local package=${1%%:*} tests=${1#*:} list=()
  for test in $tests; do
    local dir=crates/$package/tests
    [ "$package" = tollgate ] && dir=tests
    [ -f "$dir/$test.rs" ] && list+=(--test "$test")
  done
  echo "-p $package ${list[*]}"
}

for entry in "${targets[@]}"; do
  # shellcheck disable=SC2046
  cargo test --all-features $(args "$entry") --no-run -q || exit 1
done

hogs=()
for _ in $(seq "$(nproc)"); do
  (while :; do :; done) &
  hogs+=($!)
done
trap 'kill "${hogs[@]}" 2>/dev/null' EXIT

for run in $(seq "$runs"); do
  for entry in "${targets[@]}"; do
    # shellcheck disable=SC2046
    cargo test --all-features $(args "$entry") >>"$out/run-$run.log" 2>&1
  done
  failed=$(grep -cE '^test .* FAILED$' "$out/run-$run.log")
  echo "run $run: $failed failed"
done

echo "failures per test over $runs runs:"
failures=$(cat "$out"/run-*.log | grep -E '^test .* FAILED$' | sed -E 's/^test (.*) \.\.\. FAILED$/\1/')
if [ -n "$failures" ]; then
  echo "$failures" | sort | uniq -c | sort -rn
else
  echo "  none: every test passed every run"
fi
