-- wrk script for bench/soak.sh: mixed traffic over the hosts in $SOAK_HOSTS
-- (space-separated), each thread walking the list from its own offset.
-- Methods: 95% GET, 5% POST with a small JSON body. (No HEAD: wrk's parser waits for a
-- body after a HEAD response's Content-Length and stalls the connection;
-- tests/backend_faults.rs covers HEAD.)
-- Prints at the end:
--   SOAK requests=<n> connect=<n> read=<n> write=<n> timeout=<n> status=<n> non200=<n>
--   SOAK_STATUS <code> <count>   for every status other than 200
local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

function init(args)
    hosts = {}
    for h in string.gmatch(os.getenv("SOAK_HOSTS") or "", "%S+") do
        table.insert(hosts, h)
    end
    if #hosts == 0 then
        error("SOAK_HOSTS is empty")
    end
    n = id * 7
    codes = {}
    non200 = 0
end

function request()
    n = n + 1
    local host = hosts[(n % #hosts) + 1]
    local m = n % 20
    if m == 11 then
        local body = '{"soak":' .. n .. '}'
        return wrk.format("POST", "/soak/post", { Host = host, ["Content-Type"] = "application/json" }, body)
    end
    return wrk.format("GET", "/soak/" .. (n % 97), { Host = host })
end

function response(status, headers, body)
    if status ~= 200 then
        non200 = non200 + 1
        codes[status] = (codes[status] or 0) + 1
    end
end

function done(summary, latency, requests)
    local non200 = 0
    local all = {}
    for _, t in ipairs(threads) do
        non200 = non200 + (t:get("non200") or 0)
        local c = t:get("codes")
        if c then
            for k, v in pairs(c) do
                all[k] = (all[k] or 0) + v
            end
        end
    end
    local e = summary.errors
    io.write(string.format("SOAK requests=%d connect=%d read=%d write=%d timeout=%d status=%d non200=%d p50_us=%d p99_us=%d\n",
        summary.requests, e.connect, e.read, e.write, e.timeout, e.status, non200,
        latency:percentile(50), latency:percentile(99)))
    for k, v in pairs(all) do
        io.write(string.format("SOAK_STATUS %d %d\n", k, v))
    end
end
