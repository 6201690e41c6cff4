-- Benchmark entry for redeem.lua (replaces its `-- entry` line; see bench/redis_lua.py).
--
-- redis-benchmark can only put random numbers (`__rand_int__`, one range per run) into commands.
-- A range large enough to make request ids fresh (2e9) cannot name the preloaded codes directly,
-- so the code is the request id's number mod ncodes: a rare repeated request id then names the
-- same code and is a true replay (a different code would be IDEMPOTENCY_KEY_REUSED, an error reply
-- that stops redis-benchmark). The mapping costs a few Lua operations per call, which this
-- baseline pays and the engine does not.
--
-- KEYS[1]  request key ending in the draw, e.g. "req:3:000123456789"
-- ARGV[1]  terminal id, ARGV[2] ncodes
local code_number = tonumber(string.match(KEYS[1], '(%d+)$')) % tonumber(ARGV[2])
return redeem(string.format('code:%012d', code_number), KEYS[1], ARGV[1])
