-- Signed sandbox notifies (bench/shop_bench.py): the benchmark writes one form body per line
-- into a file (one paid attempt each, signed with the bench channel's key); thread i sends
-- lines i, i + threads, ... once each, then repeats its last one (a duplicate, acknowledged).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local bodies = {}
local threads_total = 1
local next_line = 1
sent = 0

function init(args)
  threads_total = tonumber(args[2]) or 1
  local n = 0
  for line in io.lines(args[1]) do
    n = n + 1
    if (n - 1) % threads_total == id then table.insert(bodies, line) end
  end
end

function request()
  sent = sent + 1
  local body = bodies[math.min(next_line, #bodies)]
  next_line = next_line + 1
  return wrk.format("POST", nil,
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
