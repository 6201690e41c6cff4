-- The verify target: each request verifies a code drawn at random from the seeded range
-- [START, START + COUNT), with a per-thread seed so that the threads draw different sequences.
--
--   wrk ... -s bench/wrk/verify.lua http://127.0.0.1:PORT/v1/verify -- START COUNT
--
-- Codes are BENCH and 10 digits (bench.http_apps.bench_code).

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local start, count
sent = 0

function init(args)
  start = tonumber(args[1])
  count = tonumber(args[2])
  assert(start and count and count > 0, "usage: -- START COUNT")
  math.randomseed(7919 * (id + 1))
end

function request()
  sent = sent + 1
  local body = string.format('{"code":"BENCH%010d"}', start + math.random(0, count - 1))
  return wrk.format(nil, nil, nil, body)
end
