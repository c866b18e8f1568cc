-- wrk script: every write carries 16 pipelined GETs of the URL's path, as in
-- TechEmpower's plaintext test. Usage: wrk ... -s pipeline.lua URL [-- DEPTH]
local batch

function init(args)
    local depth = tonumber(args[1]) or 16
    local one = wrk.format("GET", wrk.path)
    batch = string.rep(one, depth)
end

function request()
    return batch
end
