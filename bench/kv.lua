-- wrk script for bench/compare.sh: one file for every system and operation.
--
-- wrk ... -s bench/kv.lua URL -- SYS OP KEYS VALUE_SIZE STALE_QUERY MARKDIR THREADS CONNS_PER_THREAD
--   SYS   ours | orig | etcd
--   OP    put | get | getlocal | prefill
--         put      PUT /bench-NNNNNNNN (ours, orig) or POST /v3/kv/put (etcd), random key
--         get      GET /bench-NNNNNNNN (ours: linearizable default) or POST /v3/kv/range (etcd: linearizable)
--         getlocal GET /bench-NNNNNNNN<STALE_QUERY> (ours; orig: its plain GET, pass "-")
--                  or POST /v3/kv/range with "serializable": true (etcd)
--         prefill  PUT every key once, in order, spread over the threads; each thread
--                  touches MARKDIR/prefill.<id> when it is done and stops (see compare.sh)
--   STALE_QUERY  appended to GET paths for getlocal, "-" for none
--
-- Every request is built once in init() and looked up in request(): building a
-- request per call costs wrk CPU, which matters on a 2-core machine.
-- done() prints one parseable line starting with WRKRESULT.

local sys, op, nkeys, vsize, staleq, markdir, nthreads, cpt
local reqs = {}
local pos, share, seen = 0, 0, 0
id = id or 0 -- set per thread by setup()

local counter = 0
function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
   local out = {}
   for i = 1, #s, 3 do
      local a, b, c = s:byte(i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local c1 = math.floor(n / 262144) % 64
      local c2 = math.floor(n / 4096) % 64
      local c3 = math.floor(n / 64) % 64
      local c4 = n % 64
      out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1)
         .. (b and B64:sub(c3 + 1, c3 + 1) or "=")
         .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
   end
   return table.concat(out)
end

function init(args)
   sys, op = args[1], args[2]
   nkeys, vsize = tonumber(args[3]), tonumber(args[4])
   staleq, markdir = args[5], args[6]
   nthreads, cpt = tonumber(args[7]), tonumber(args[8])
   if staleq == "-" then staleq = "" end

   -- one deterministic printable value of vsize bytes
   local chars = "abcdefghijklmnopqrstuvwxyz0123456789"
   local t, x = {}, 12345
   for i = 1, vsize do
      x = (x * 1103515245 + 12345) % 2147483648
      local k = x % #chars + 1
      t[i] = chars:sub(k, k)
   end
   local value = table.concat(t)
   local bvalue = b64(value)

   local kind = op
   if op == "prefill" then kind = "put" end
   for i = 1, nkeys do
      local key = string.format("bench-%08d", i - 1)
      local r
      if sys == "etcd" then
         -- always a fresh headers table: wrk.format(…, nil, …) mutates wrk.headers
         local h = { ["Content-Type"] = "application/json" }
         if kind == "put" then
            r = wrk.format("POST", "/v3/kv/put", h,
               '{"key":"' .. b64(key) .. '","value":"' .. bvalue .. '"}')
         elseif kind == "get" then
            r = wrk.format("POST", "/v3/kv/range", h, '{"key":"' .. b64(key) .. '"}')
         else
            r = wrk.format("POST", "/v3/kv/range", h,
               '{"key":"' .. b64(key) .. '","serializable":true}')
         end
      else
         if kind == "put" then
            r = wrk.format("PUT", "/" .. key, {}, value)
         elseif kind == "get" then
            r = wrk.format("GET", "/" .. key, {})
         else
            r = wrk.format("GET", "/" .. key .. staleq, {})
         end
      end
      reqs[i] = r
   end

   math.randomseed(os.time() * 1000 + id * 7919)
   for _ = 1, 10 do math.random() end

   if op == "prefill" then
      -- keys id, id+T, id+2T, ... belong to this thread
      share = math.floor((nkeys - 1 - id) / nthreads) + 1
      if id >= nkeys then share = 0 end
      -- response() is wanted only here: wrk parses bodies only if it exists after init()
      response = function(status, headers, body)
         seen = seen + 1
         -- each connection has one request in flight: after share + cpt responses
         -- this thread's keys have (practically always) all been answered
         if seen == share + cpt then
            local f = io.open(markdir .. "/prefill." .. id, "w")
            if f then f:close() end
            wrk.thread:stop()
         end
      end
   end
end

function request()
   if op == "prefill" then
      -- wrk calls request() once in thread 0 to verify the script, which eats
      -- key 0; the extra requests after a thread's share re-send its first key.
      local k = id
      if pos < share then
         k = id + pos * nthreads
         pos = pos + 1
      end
      return reqs[k + 1]
   end
   return reqs[math.random(nkeys)]
end

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "WRKRESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f mean_ms=%.3f max_ms=%.3f requests=%d secs=%.2f"
      .. " err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests / secs,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      latency:percentile(99.9) / 1000, latency.mean / 1000, latency.max / 1000,
      summary.requests, secs,
      e.connect, e.read, e.write, e.status, e.timeout))
end
