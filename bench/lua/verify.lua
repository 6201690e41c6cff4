-- Redis + Lua baseline: verify a code without consuming anything.
--
-- KEYS[1]  code key, "code:<code>"
--
-- Returns {status, uses_left} where status follows the engine's precedence: void, frozen,
-- redeemed, not_sold, not_yet_valid, expired, valid. Unknown codes are CODE_NOT_FOUND.
local function verify(code_key)
  local c = redis.call('HMGET', code_key, 'state', 'uses', 'valid_from', 'valid_until')
  local state, uses = c[1], tonumber(c[2])
  if not state then
    return redis.error_reply('CODE_NOT_FOUND')
  end
  local status = 'valid'
  if state == 'void' or state == 'frozen' then
    status = state
  elseif state == 'redeemed' or uses <= 0 then
    status = 'redeemed'
  elseif state == 'available' or state == 'held' then
    status = 'not_sold'
  elseif c[3] or c[4] then
    local now_s = tonumber(redis.call('TIME')[1])
    if c[3] and now_s < tonumber(c[3]) then
      status = 'not_yet_valid'
    elseif c[4] and now_s > tonumber(c[4]) then
      status = 'expired'
    end
  end
  return {status, uses}
end
-- entry
return verify(KEYS[1])
