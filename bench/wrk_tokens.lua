-- wrk_tokens.lua - one fresh payment credential per request (bench/paid_vs_free.sh).
--
--   wrk -t1 -c64 -d8s -s bench/wrk_tokens.lua URL -- TOKEN_FILE [HEADER [cycle]]
--
-- TOKEN_FILE holds one base64url record per line (bench/mp_paygen). Each
-- request sends the next line as "HEADER: Payment <token>" (HEADER defaults
-- to Authorization). Tokens are used once; when they run out, every further
-- request carries "Payment tokens-exhausted", which the server refuses (400
-- malformed), so a short file shows up in wrk's "Non-2xx" count instead of
-- silently re-sending spent tokens.
--
-- "cycle" re-uses the file from the start instead: for the free baseline,
-- which sends a dummy header of the same size through this same request()
-- so that wrk's per-request Lua cost is identical in free and paid runs.
--
-- Use one wrk thread (-t1): every thread has its own Lua state and would
-- send the same tokens.

local tokens, count, pos = {}, 0, 0
local header, cycle = "Authorization", false

function setup(thread)
   threads = (threads or 0) + 1
   if threads > 1 then
      io.stderr:write("wrk_tokens.lua: use -t1 (each thread would send the same tokens)\n")
   end
end

function init(args)
   local file = args[1]
   if file == nil then
      io.stderr:write("wrk_tokens.lua: give the token file after --\n")
      os.exit(2)
   end
   if args[2] ~= nil and args[2] ~= "" then header = args[2] end
   cycle = args[3] == "cycle"
   for line in io.lines(file) do
      if line ~= "" then
         count = count + 1
         tokens[count] = "Payment " .. line
      end
   end
   if count == 0 then
      io.stderr:write("wrk_tokens.lua: no tokens in " .. file .. "\n")
      os.exit(2)
   end
end

local exhausted = "Payment tokens-exhausted"

function request()
   pos = pos + 1
   local v
   if pos <= count then
      v = tokens[pos]
   elseif cycle then
      pos = 1
      v = tokens[1]
   else
      v = exhausted
   end
   return wrk.format(nil, nil, { [header] = v })
end
