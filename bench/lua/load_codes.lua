-- Bench helper: create codes "code:%012d" for numbers ARGV[1]..ARGV[2] (inclusive).
--
-- KEYS[1]  pool set to add the codes to, or "" for none (codes then start `allocated`)
-- ARGV[1]  first number, ARGV[2] last number, ARGV[3] sku, ARGV[4] uses per code
--
-- Server-side so that preloading millions of codes takes seconds, not a pipeline's minutes.
local first, last = tonumber(ARGV[1]), tonumber(ARGV[2])
local pool_key = KEYS[1]
local state = 'allocated'
if pool_key ~= '' then
  state = 'available'
end
local batch = {}
for i = first, last do
  local code = string.format('%012d', i)
  redis.call('HSET', 'code:' .. code, 'sku', ARGV[3], 'state', state, 'uses', ARGV[4])
  if pool_key ~= '' then
    batch[#batch + 1] = code
    if #batch == 1000 then
      redis.call('SADD', pool_key, unpack(batch))
      batch = {}
    end
  end
end
if #batch > 0 then
  redis.call('SADD', pool_key, unpack(batch))
end
return last - first + 1
