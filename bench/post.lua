-- wrk script for bench/run.sh: POST one JSON payload on every request, and print one line of
-- JSON with the figures when the run ends.
--
--   BENCH_BODY=tests/fixtures/inbound/flow-task-fail.json \
--     wrk -t2 -c64 -d10s -s bench/post.lua http://127.0.0.1:8080/hooks/flow

local path = os.getenv("BENCH_BODY") or "tests/fixtures/inbound/flow-task-fail.json"
local file = assert(io.open(path, "rb"), "cannot open " .. path)
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,'
      .. '"max_ms":%.3f,"non2xx":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect, e.read, e.write, e.timeout))
end
