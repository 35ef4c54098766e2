-- wrk script: POSTs a chat request with a prompt no other request has (a cache miss every time,
-- across runs too: each thread of each run draws its own random tag for its prompts)
-- and prints one machine-readable RESULT line at the end. With TOLLGATE_BENCH_API=anthropic it
-- POSTs the same question as a Messages request to /v1/messages, with TOLLGATE_BENCH_API=responses
-- as a Responses request to /v1/responses, for the role TOLLGATE_BENCH_ROLE names.
-- With TOLLGATE_BENCH_PORTKEY_HOST set (an upstream's base URL, ending in /v1) the chat request
-- carries Portkey's routing headers (x-portkey-provider: openai, x-portkey-custom-host: that URL).
-- With TOLLGATE_BENCH_QUANTILES=1 it also prints a QUANTILES line: the latency at 90.0, 90.1, ...
-- 100.0 percent, in ms (the long run merges 10-s slices' tails into one minute's p99 with them).
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  -- A run starts its counters at 1 again: without a tag of its own, its prompts would be an
  -- earlier run's, and the gateway's cache would answer them.
  local random = io.open("/dev/urandom", "rb")
  tag = random:read(6):gsub(".", function(c) return string.format("%02x", c:byte()) end) .. "-" .. id
  random:close()
  key = os.getenv("TOLLGATE_BENCH_KEY") or "tg-bench"
  anthropic = os.getenv("TOLLGATE_BENCH_API") == "anthropic"
  responses = os.getenv("TOLLGATE_BENCH_API") == "responses"
  role = os.getenv("TOLLGATE_BENCH_ROLE") or "default"
  portkey_host = os.getenv("TOLLGATE_BENCH_PORTKEY_HOST")
end

function request()
  counter = counter + 1
  local body = '{"model":"' .. role .. '","max_tokens":32,"messages":[{"role":"user","content":"question '
    .. tag .. "-" .. counter .. ' about the weather"}]}'
  if responses then
    return wrk.format("POST", "/v1/responses", {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. key,
    }, '{"model":"' .. role .. '","max_output_tokens":32,"input":"question ' .. tag .. "-" .. counter
      .. ' about the weather"}')
  end
  if anthropic then
    return wrk.format("POST", "/v1/messages", {
      ["Content-Type"] = "application/json",
      ["anthropic-version"] = "2023-06-01",
      ["x-api-key"] = key,
    }, body)
  end
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }
  if portkey_host then
    headers["x-portkey-provider"] = "openai"
    headers["x-portkey-custom-host"] = portkey_host
  end
  return wrk.format("POST", "/v1/chat/completions", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, errors))
  if os.getenv("TOLLGATE_BENCH_QUANTILES") == "1" then
    local q = {}
    for i = 0, 100 do
      q[#q + 1] = string.format("%.3f", latency:percentile(90 + i / 10) / 1000)
    end
    io.write("QUANTILES " .. table.concat(q, " ") .. "\n")
  end
end
