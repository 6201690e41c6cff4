-- The hold targets: each request holds QUANTITY codes of SKU for TTL seconds under a
-- client_hold_id no other request uses (TAG-id-n), so every request is a new hold.
--
--   wrk ... -s bench/wrk/hold.lua http://127.0.0.1:PORT/v1/holds -- SKU QUANTITY TTL TAG
--
-- A new hold answers 201; response() counts them ("created" in common.lua's summary line).

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local sku, quantity, ttl, tag
sent = 0
created = 0

function init(args)
  sku = args[1]
  quantity = tonumber(args[2])
  ttl = tonumber(args[3])
  tag = args[4]
  assert(sku and quantity and ttl and tag, "usage: -- SKU QUANTITY TTL TAG")
end

function request()
  sent = sent + 1
  local body = string.format(
    '{"sku":"%s","quantity":%d,"ttl_seconds":%d,"client_hold_id":"%s-%d-%d"}',
    sku, quantity, ttl, tag, id, sent)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 201 then created = created + 1 end
end
