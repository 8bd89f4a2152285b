-- wrk script: POST the JSON body in $WRK_BODY to the URL's path (a second load generator,
-- in C, beside `modelserve bench`'s Python clients); errors are non-2xx answers.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  io.write(string.format("WRK %d requests %.1f req/s non2xx %d p50 %.1f ms p99 %.1f ms\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
