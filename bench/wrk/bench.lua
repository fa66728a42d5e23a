-- wrk script shared by every path and its baseline, so both send the same
-- requests apart from the path.
--
--   BENCH_TOKENS  file with one JWT per line (optional). Each request carries
--                 the next one, cycling, in "Cookie: <BENCH_COOKIE>=<jwt>".
--                 The request is formatted once in init(); per request wrk
--                 only concatenates prefix .. token .. suffix.
--   BENCH_OFFSET  where in the token list to start (default 0)
--   BENCH_COOKIE  cookie name (default "flashsale")
--   BENCH_ACCEPT  Accept header (optional)
--
-- done() prints one line "BENCH {json}" that bench.pl parses.

local tokens_file = os.getenv("BENCH_TOKENS")
local cookie      = os.getenv("BENCH_COOKIE") or "flashsale"
local accept      = os.getenv("BENCH_ACCEPT")

if accept and accept ~= "" then
    wrk.headers["Accept"] = accept
end

local threads = {}
local nthreads = 0

function setup(thread)
    thread:set("tid", nthreads)
    nthreads = nthreads + 1
    table.insert(threads, thread)
end

if tokens_file and tokens_file ~= "" then
    local toks, n, i, prefix, suffix

    function init(args)
        toks = {}
        local f = assert(io.open(tokens_file, "r"))
        for line in f:lines() do
            if #line > 0 then toks[#toks + 1] = line end
        end
        f:close()
        n = #toks
        assert(n > 0, "no tokens in " .. tokens_file)

        -- the request once, with a marker where the token goes
        local h = {}
        for k, v in pairs(wrk.headers) do h[k] = v end
        h["Cookie"] = cookie .. "=\1"
        local s = wrk.format(nil, wrk.path, h)
        local a, b = s:find("\1", 1, true)
        prefix, suffix = s:sub(1, a - 1), s:sub(b + 1)

        -- successive runs go on where the last one stopped (BENCH_OFFSET),
        -- threads start at different places in the list
        local off = tonumber(os.getenv("BENCH_OFFSET") or "0") or 0
        i = (off + tid * math.floor(n / 8)) % n
    end

    function request()
        i = i + 1
        if i > n then i = 1 end
        return prefix .. toks[i] .. suffix
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH {"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
        '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(99), latency.mean,
        latency.max))
end
