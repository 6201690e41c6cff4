-- Redis + Lua baseline: redeem one use of a code, idempotent on the request id.
--
-- KEYS[1]  code key, "code:<code>" (a hash: sku, state, uses, optional valid_from/valid_until)
-- KEYS[2]  request key, "req:<request_id>" (a string holding the first result)
-- ARGV[1]  terminal id
--
-- A request id seen before for the same code and terminal returns the stored result; for another
-- code or terminal it is IDEMPOTENCY_KEY_REUSED. Otherwise the code's state, uses and validity are
-- checked in the engine's precedence order, one use is taken (state `redeemed` at zero), the
-- redemption gets an id from a counter and the result is stored under the request key.
local function redeem(code_key, request_key, terminal)
  local prev = redis.call('GET', request_key)
  if prev then
    local prev_code, prev_terminal = string.match(prev, '^([^|]*)|([^|]*)|')
    if prev_code ~= code_key then
      return redis.error_reply('IDEMPOTENCY_KEY_REUSED code')
    end
    if prev_terminal ~= terminal then
      return redis.error_reply('IDEMPOTENCY_KEY_REUSED terminal')
    end
    return prev
  end
  local c = redis.call('HMGET', code_key, 'state', 'uses', 'valid_from', 'valid_until')
  local state, uses = c[1], tonumber(c[2])
  if not state then
    return redis.error_reply('CODE_NOT_FOUND')
  end
  if state == 'void' then
    return redis.error_reply('VOID')
  end
  if state == 'frozen' then
    return redis.error_reply('FROZEN')
  end
  if state == 'redeemed' or uses <= 0 then
    return redis.error_reply('ALREADY_REDEEMED')
  end
  if state ~= 'allocated' then
    return redis.error_reply('NOT_SOLD')
  end
  local t = redis.call('TIME')
  local now_s = tonumber(t[1])
  if c[3] and now_s < tonumber(c[3]) then
    return redis.error_reply('NOT_YET_VALID')
  end
  if c[4] and now_s > tonumber(c[4]) then
    return redis.error_reply('EXPIRED')
  end
  local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
  uses = uses - 1
  local new_state = 'allocated'
  if uses == 0 then
    new_state = 'redeemed'
  end
  local redemption_id = redis.call('INCR', 'redemption_seq')
  redis.call('HSET', code_key, 'state', new_state, 'uses', uses, 'last_redemption', redemption_id,
    'last_at_ms', now_ms, 'last_terminal', terminal)
  local result = code_key .. '|' .. terminal .. '|' .. uses .. '|' .. now_ms .. '|' .. redemption_id
  redis.call('SET', request_key, result)
  return result
end
-- entry
return redeem(KEYS[1], KEYS[2], ARGV[1])
