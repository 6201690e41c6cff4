-- Bench helper: one SCAN page of the proof that no code went to two orders.
--
-- ARGV[1]  SCAN cursor ("0" to start), ARGV[2] pattern of the order keys, e.g. "order:2:*"
--
-- Returns {next_cursor, orders, mismatches, codes}: the orders on this page, the codes whose hash
-- does not say sold to that very order, and every code of those orders. The caller pages until
-- the cursor is "0" and counts codes seen twice (bench/redis_lua.py: check_orders), so that no
-- single call blocks Redis for long.
local page = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 20000)
local orders, mismatches, codes = 0, 0, {}
for _, order_key in ipairs(page[2]) do
  orders = orders + 1
  local stored = redis.call('HGET', order_key, 'codes')
  for code in string.gmatch(stored, '[^,]+') do
    codes[#codes + 1] = code
    local c = redis.call('HMGET', 'code:' .. code, 'state', 'order')
    if c[1] == 'available' or c[2] ~= order_key then
      mismatches = mismatches + 1
    end
  end
end
return {page[1], orders, mismatches, codes}
