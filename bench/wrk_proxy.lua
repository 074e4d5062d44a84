-- wrk_proxy.lua: requests for bench/wallet_vs_direct.sh.
--   MPB_HOST   the vendor's authority (news.example:PORT), sent as Host
--   MPB_PATH   the path (/index.html, /paid/a1.html)
--   MPB_PROXY  "1": absolute-form targets, as a browser sends to a proxy
--   MPB_UNIQUE "1": a fresh query per request, so every paid request pays
--              (no receipt applies) and is paid up front by the wallet
--   MPB_RUN    makes the queries of one run differ from every other run's
-- done() prints "non200 N" so the script can check every answer was 200.
local host = os.getenv("MPB_HOST")
local path = os.getenv("MPB_PATH")
local proxy = os.getenv("MPB_PROXY") == "1"
local unique = os.getenv("MPB_UNIQUE") == "1"
local run = os.getenv("MPB_RUN") or "0"
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    n = 0
    non200 = 0
end

function request()
    n = n + 1
    local p = path
    if unique then p = p .. "?r=" .. run .. "-" .. n end
    if proxy then p = "http://" .. host .. p end
    return wrk.format("GET", p, { ["Host"] = host })
end

function response(status, headers, body)
    if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
    local bad = 0
    for _, t in ipairs(threads) do bad = bad + t:get("non200") end
    io.write(string.format("non200 %d\n", bad))
end
