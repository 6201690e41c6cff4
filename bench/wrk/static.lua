-- The raw ASGI and FastAPI no-op targets: the same small JSON POST every time, built once by wrk
-- (no request() function, so wrk's fast path). The body is the size of a verify request.
--
--   wrk ... -s bench/wrk/static.lua http://127.0.0.1:PORT/noop

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"code":"BENCH0000000000"}'
