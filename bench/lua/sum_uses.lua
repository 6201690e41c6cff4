-- Bench helper: the total uses left over codes "code:%012d" for numbers ARGV[1]..ARGV[2].
local total = 0
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  total = total + tonumber(redis.call('HGET', string.format('code:%012d', i), 'uses'))
end
return total
