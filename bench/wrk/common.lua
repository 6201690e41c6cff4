-- Shared by the wrk scripts of bench/http_bench.py; each script loads it with dofile.
--
-- setup() gives every thread an id (0, 1, ...) before it starts, so that scripts can derive
-- request data no other thread uses. done() prints one line the benchmark parses beside wrk's
-- own report: how many requests the threads built ("sent"; a dynamic script counts them in its
-- global `sent`) and the most one thread built ("sent_max"), so that the benchmark knows which
-- codes a run may have touched, including requests still in flight when wrk stopped. A script
-- that counts created resources in its global `created` (order.lua: 201 answers) gets
-- "created=N" added to that line; one that counts 2xx answers reporting a failure in its global
-- `failed` (batch.lua: a batch with a failed item) gets "failed=N".

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local sent, sent_max, created, failed = 0, 0, nil, nil
  for _, thread in ipairs(threads) do
    local count = thread:get("sent") or 0
    sent = sent + count
    if count > sent_max then sent_max = count end
    local made = thread:get("created")
    if made then created = (created or 0) + made end
    local bad = thread:get("failed")
    if bad then failed = (failed or 0) + bad end
  end
  io.write(string.format(
    "http_bench: threads=%d sent=%d sent_max=%d completed=%d status_errors=%d"
      .. " p50_us=%d p99_us=%d%s%s\n",
    #threads, sent, sent_max, summary.requests, summary.errors.status,
    latency:percentile(50), latency:percentile(99),
    created and string.format(" created=%d", created) or "",
    failed and string.format(" failed=%d", failed) or ""))
end
