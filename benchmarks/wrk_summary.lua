-- wrk's own summary as one JSON line, with exact counts and latencies in microseconds (benchmarks/run.py
-- parses it). Only `done` is defined: a `response` hook would make wrk run Lua on every response.
-- `status` is what wrk prints as "Non-2xx or 3xx responses": responses with a status >= 400.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %.0f, "p99_us": %.0f, '
      .. '"mean_us": %.1f, "max_us": %.0f, "connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.timeout, e.status))
end
