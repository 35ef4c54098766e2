-- wrk script: POSTs a chat request with a prompt no other request has (a cache miss every time)
-- and prints one machine-readable RESULT line at the end. With TOLLGATE_BENCH_API=anthropic it
-- POSTs the same question as a Messages request to /v1/messages, with TOLLGATE_BENCH_API=responses
-- as a Responses request to /v1/responses, for the role TOLLGATE_BENCH_ROLE names.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  key = os.getenv("TOLLGATE_BENCH_KEY") or "tg-bench"
  anthropic = os.getenv("TOLLGATE_BENCH_API") == "anthropic"
  responses = os.getenv("TOLLGATE_BENCH_API") == "responses"
  role = os.getenv("TOLLGATE_BENCH_ROLE") or "default"
end

function request()
  counter = counter + 1
  local body = '{"model":"' .. role .. '","max_tokens":32,"messages":[{"role":"user","content":"question '
    .. id .. "-" .. counter .. ' about the weather"}]}'
  if responses then
    return wrk.format("POST", "/v1/responses", {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. key,
    }, '{"model":"' .. role .. '","max_output_tokens":32,"input":"question ' .. id .. "-" .. counter
      .. ' about the weather"}')
  end
  if anthropic then
    return wrk.format("POST", "/v1/messages", {
      ["Content-Type"] = "application/json",
      ["anthropic-version"] = "2023-06-01",
      ["x-api-key"] = key,
    }, body)
  end
  return wrk.format("POST", "/v1/chat/completions", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, errors))
end
