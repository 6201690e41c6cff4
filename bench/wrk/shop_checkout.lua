-- Checkouts that get a hold and a payment attempt (bench/shop_bench.py): each request a new
-- buyer (email from the run's tag, the thread and its counter); counts the 201 answers.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local tag = "run"
sent = 0
created = 0

function init(args)
  tag = args[1] or tag
end

function request()
  sent = sent + 1
  local body = string.format(
    '{"sku":"SHOP","quantity":1,"email":"%s-%d-%d@example.com","channel_id":"bench"}',
    tag, id, sent)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 201 then created = created + 1 end
end
