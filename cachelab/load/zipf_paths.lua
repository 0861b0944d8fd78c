-- wrk script of cachelab (notebook 07): request paths taken in order from a stream file, one path a line
-- (the standard Zipf stream, written by cachelab.load.wrk). Usage:
--   wrk -t1 -c8 -d2s -s zipf_paths.lua http://127.0.0.1:PORT -- PATHS_FILE [THREADS] [START]
-- Thread i starts at line START + i * lines / THREADS (START 0 by default) and cycles through the stream, so
-- that a run can go on where the previous run on the same server stopped. done() prints one line,
-- "cachelab-wrk " followed by JSON: the run's counts and errors, percentiles of wrk's own latency histogram in
-- microseconds, and "position": the line the first thread sent last (a next run's START, to go on from there).

local threads = {}

function setup(thread)  -- in the main script state, once per thread, before the thread's init()
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)  -- in each thread's own state
  local lines = {}
  for line in io.lines(args[1]) do
    if #line > 0 then lines[#lines + 1] = wrk.format("GET", line) end  -- built once, as wrk's docs advise
  end
  prepared = lines
  local nthreads = tonumber(args[2]) or 1
  local start = tonumber(args[3]) or 0
  position = (start + math.floor(id * #prepared / nthreads)) % #prepared  -- the line sent last: none yet
end

function request()
  position = position % #prepared + 1
  return prepared[position]
end

local function number(x)
  return string.format("%.17g", x)
end

function done(summary, latency, requests)
  local e = summary.errors
  local parts = {
    '"requests":' .. number(summary.requests), '"duration_us":' .. number(summary.duration),
    '"bytes":' .. number(summary.bytes), '"position":' .. number(threads[1]:get("position") or 0),
    '"errors":{"connect":' .. number(e.connect) .. ',"read":' .. number(e.read) .. ',"write":' ..
      number(e.write) .. ',"status":' .. number(e.status) .. ',"timeout":' .. number(e.timeout) .. '}',
    '"latency_us":{"min":' .. number(latency.min) .. ',"max":' .. number(latency.max) .. ',"mean":' ..
      number(latency.mean) .. ',"stdev":' .. number(latency.stdev),
  }
  for _, p in ipairs({50, 75, 90, 99, 99.9}) do
    parts[#parts] = parts[#parts] .. ',"p' .. tostring(p) .. '":' .. number(latency:percentile(p))
  end
  parts[#parts] = parts[#parts] .. '}'
  io.write("cachelab-wrk {" .. table.concat(parts, ",") .. "}\n")
end
