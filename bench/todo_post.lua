-- wrk script: POST /api/todos at a fixed rate per connection (wrk has no
-- rate option; delay() spaces each connection's requests).
-- Usage: wrk -c C -s todo_post.lua URL -- DELAY_MS
local delay_ms = 10

function init(args)
    delay_ms = tonumber(args[1]) or delay_ms
end

function request()
    return wrk.format("POST", "/api/todos", { ["Content-Type"] = "application/json" },
        '{"text":"load test item"}')
end

function delay()
    return delay_ms
end

function done(summary, latency, requests)
    local errors = summary.errors.connect + summary.errors.read + summary.errors.write
        + summary.errors.status + summary.errors.timeout
    io.write(string.format("post_requests=%d post_errors=%d\n", summary.requests, errors))
end
