-- The redeem targets: each request redeems a code no other request uses, under a fresh request
-- id. Thread `id` of `stride` threads takes codes start + id, start + id + stride, ... so two
-- requests never share a code; the benchmark seeds enough codes and starts the next run (the
-- measurement after the warm-up) past the last code this one could have reached.
--
--   wrk ... -s bench/wrk/redeem.lua http://127.0.0.1:PORT/v1/redeem -- START STRIDE TAG
--
-- Codes are BENCH and 10 digits (bench.http_apps.bench_code); request ids TAG-id-n.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local start, stride, tag
sent = 0

function init(args)
  start = tonumber(args[1])
  stride = tonumber(args[2])
  tag = args[3]
  assert(start and stride and tag, "usage: -- START STRIDE TAG")
  assert(id < stride, "more threads than STRIDE")
end

function request()
  local index = start + sent * stride + id
  sent = sent + 1
  local body = string.format('{"code":"BENCH%010d","request_id":"%s-%d-%d"}',
    index, tag, id, sent)
  return wrk.format(nil, nil, nil, body)
end
