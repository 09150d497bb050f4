-- wrk script: POST pre-signed Zendesk webhooks, one new delivery per request.
--
--   wrk -t2 -c16 -d20s --latency -s bench/wrk_signed.lua http://127.0.0.1:8000/webhooks/zendesk -- FILE 2
--
-- Zendesk signs timestamp + body (HMAC-SHA256, base64), which wrk's Lua cannot compute, so
-- bench_intake.py signs the requests in advance: FILE holds one per line, tab-separated
-- "timestamp<TAB>signature<TAB>invocation id<TAB>body" (the body is compact JSON without tabs). Each
-- of the N wrk threads (the second argument, the same as -t) takes every N-th line. A thread that runs out starts again from its first request:
-- those repeats are duplicates (200) rather than new deliveries (202), and done() reports how many.
--
-- done() prints one line "WRK_JSON {...}" with the counts per status and the latency percentiles
-- (microseconds), which bench_intake.py reads.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  local nthreads = tonumber(args[2] or "1")
  requests_ = {}
  local n = 0
  local line_no = 0
  for line in io.lines(path) do
    if line_no % nthreads == id then
      local stamp, signature, invocation, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      n = n + 1
      requests_[n] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["X-Zendesk-Webhook-Signature"] = signature,
        ["X-Zendesk-Webhook-Signature-Timestamp"] = stamp,
        ["X-Zendesk-Webhook-Invocation-Id"] = invocation,
      }, body)
    end
    line_no = line_no + 1
  end
  total_ = n
  next_ = 1
  wrapped = 0
  s200, s202, s503, sother = 0, 0, 0, 0
end

function request()
  local r = requests_[next_]
  next_ = next_ + 1
  if next_ > total_ then
    next_ = 1
    wrapped = wrapped + 1
  end
  return r
end

function response(status, headers, body)
  if status == 202 then
    s202 = s202 + 1
  elseif status == 200 then
    s200 = s200 + 1
  elseif status == 503 then
    s503 = s503 + 1
  else
    sother = sother + 1
  end
end

function done(summary, latency, requests)
  local c = { s200 = 0, s202 = 0, s503 = 0, sother = 0, wrapped = 0 }
  for _, thread in ipairs(threads) do
    for key, _ in pairs(c) do
      c[key] = c[key] + (thread:get(key) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"status": {"200": %d, "202": %d, "503": %d, "other": %d}, "wrapped": %d, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    c.s200, c.s202, c.s503, c.sother, c.wrapped,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
