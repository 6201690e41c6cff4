-- Redis + Lua baseline: allocate `qty` codes of one pool to an order, idempotent on the order key.
--
-- KEYS[1]  pool set key, e.g. "pool:SKU:0" (members are code texts)
-- KEYS[2]  order key, e.g. "order:<order_ref>" (a hash: pool, qty, codes)
-- ARGV[1]  qty (positive integer)
--
-- If the order key exists, the same (pool, qty) returns the stored codes and anything different
-- is IDEMPOTENCY_KEY_REUSED. Otherwise SPOP takes `qty` codes (all or nothing: a short pop is
-- pushed back and OUT_OF_STOCK returned), each code's hash is marked allocated to the order, and
-- the order is stored. One script, so Redis runs it atomically.
local function allocate(pool_key, order_key, qty_text)
  local qty = tonumber(qty_text)
  if not qty or qty < 1 then
    return redis.error_reply('QUANTITY_MUST_BE_POSITIVE')
  end
  local prev = redis.call('HMGET', order_key, 'pool', 'qty', 'codes')
  if prev[1] then
    if prev[1] ~= pool_key then
      return redis.error_reply('IDEMPOTENCY_KEY_REUSED pool')
    end
    if tonumber(prev[2]) ~= qty then
      return redis.error_reply('IDEMPOTENCY_KEY_REUSED qty')
    end
    local stored = {}
    for code in string.gmatch(prev[3], '[^,]+') do
      stored[#stored + 1] = code
    end
    return stored
  end
  local codes = redis.call('SPOP', pool_key, qty)
  if #codes < qty then
    if #codes > 0 then
      redis.call('SADD', pool_key, unpack(codes))
    end
    return redis.error_reply('OUT_OF_STOCK')
  end
  for _, code in ipairs(codes) do
    redis.call('HSET', 'code:' .. code, 'state', 'allocated', 'order', order_key)
  end
  redis.call('HSET', order_key, 'pool', pool_key, 'qty', qty, 'codes', table.concat(codes, ','))
  return codes
end
-- entry
return allocate(KEYS[1], KEYS[2], ARGV[1])
