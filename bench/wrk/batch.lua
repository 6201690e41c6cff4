-- The batch redeem targets: each request redeems ITEMS codes that no other request uses, each
-- under a fresh request id. Request n of thread `id` (of `stride` threads) takes block
-- b = n * stride + id, the codes start + b * ITEMS .. start + b * ITEMS + ITEMS - 1, so two
-- requests never share a code; the benchmark seeds enough codes and starts the next run past
-- the last block this one could have reached (sent_max, from common.lua).
--
--   wrk ... -s bench/wrk/batch.lua http://127.0.0.1:PORT/v1/redeem/batch -- START STRIDE TAG ITEMS
--
-- Codes are BENCH and 10 digits (bench.http_apps.bench_code); request ids TAG-id-n-j.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local start, stride, tag, items
sent = 0

function init(args)
  start = tonumber(args[1])
  stride = tonumber(args[2])
  tag = args[3]
  items = tonumber(args[4])
  assert(start and stride and tag and items and items >= 1, "usage: -- START STRIDE TAG ITEMS")
  assert(id < stride, "more threads than STRIDE")
end

function request()
  local first = start + (sent * stride + id) * items
  sent = sent + 1
  local parts = {}
  for j = 0, items - 1 do
    parts[#parts + 1] = string.format('{"code":"BENCH%010d","request_id":"%s-%d-%d-%d"}',
      first + j, tag, id, sent, j)
  end
  local body = '{"items":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format(nil, nil, nil, body)
end

-- Every item must be redeemed: a 200 whose body reports a failed item counts as "failed".
failed = 0

function response(status, headers, body)
  if status == 200 and not string.find(body, '"failed":0,', 1, true) then
    failed = failed + 1
  end
end
