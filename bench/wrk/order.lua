-- The order targets: each request buys QUANTITY codes of SKU under a client_order_id no other
-- request uses (TAG-id-n: the run's tag, the thread's id from common.lua, the thread's count),
-- so every request is a new order and never a retry of an earlier one.
--
--   wrk ... -s bench/wrk/order.lua http://127.0.0.1:PORT/v1/orders -- SKU QUANTITY TAG
--
-- A new order answers 201 and a retry 200; response() counts the 201s per thread ("created" in
-- the summary line of common.lua), so the benchmark can tell that every 2xx was a new order.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local sku, quantity, tag
sent = 0
created = 0

function init(args)
  sku = args[1]
  quantity = tonumber(args[2])
  tag = args[3]
  assert(sku and quantity and quantity >= 1 and tag, "usage: -- SKU QUANTITY TAG")
end

function request()
  sent = sent + 1
  local body = string.format('{"sku":"%s","quantity":%d,"client_order_id":"%s-%d-%d"}',
    sku, quantity, tag, id, sent)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 201 then created = created + 1 end
end
