-- wrk script for bench/run.sh: prints one machine-readable line at the end of a run,
--   RESULT <requests> <duration_us> <p50_us> <p99_us> <non2xx3xx> <socket_errors>
-- (wrk's `status` error count is every response with a status above 399), and, when
-- WRK_HIST names a file, writes the whole latency histogram there as "<us>:<count>" pairs
-- so that bench/summary.py can pool the rounds of a row into one distribution.
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT %d %d %d %d %d %d\n",
        summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(99),
        e.status, e.connect + e.read + e.write + e.timeout))
    local path = os.getenv("WRK_HIST")
    if path then
        local f = assert(io.open(path, "w"))
        for i = 1, #latency do
            local value, count = latency(i)
            f:write(string.format("%d:%d\n", value, count))
        end
        f:close()
    end
end
