-- wrk script for bench/run.sh: prints one machine-readable line at the end of a run.
--   RESULT <requests> <duration_us> <p50_us> <p99_us> <non2xx3xx> <socket_errors>
-- (wrk's `status` error count is every response with a status above 399.)
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT %d %d %d %d %d %d\n",
        summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(99),
        e.status, e.connect + e.read + e.write + e.timeout))
end
