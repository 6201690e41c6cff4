-- Sold-out checkouts (bench/shop_bench.py): the same checkout of a SKU with no stock left,
-- built once by wrk (its fast path). Every answer must be 409 OUT_OF_STOCK.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"sku":"SOLDOUT","quantity":1,"email":"bench@example.com","channel_id":"bench"}'
