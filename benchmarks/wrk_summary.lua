-- wrk's own summary as one JSON line, with exact counts and latencies in microseconds (benchmarks/run.py
-- parses it). Only `done` is defined: a `response` hook would make wrk run Lua on every response.
-- `status` is what wrk prints as "Non-2xx or 3xx responses": responses with a status >= 400.
-- WRK_BODY_BYTES (set by benchmarks/load.py): every request is a POST with a body of that many bytes,
-- built once per thread, as wrk's own post example does.
local body_bytes = tonumber(os.getenv("WRK_BODY_BYTES") or "")
if body_bytes then
  wrk.method = "POST"
  wrk.body = string.rep("x", body_bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %.0f, "p99_us": %.0f, '
      .. '"mean_us": %.1f, "max_us": %.0f, "connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.timeout, e.status))
end
