-- The wrk script of the bench: bench/wrk.py fills in the first block per measurement.
-- Static requests stay static (wrk's fast path); with a token file every request is a
-- refresh presenting a token never presented before: this thread's share of the file,
-- then the successors that the 200 answers return.
wrk.method = __METHOD__
wrk.body = __BODY__
local token_file = __TOKEN_FILE__
local nthreads = __THREADS__

local threads, started = {}, 0

function setup(thread)
  thread:set("tid", started)
  started = started + 1
  table.insert(threads, thread)
end

if token_file then
  local queue, head, tail, last = {}, 1, 0, nil

  function init(args)
    local i = 0
    for line in io.lines(token_file) do
      if i % nthreads == tid and #line > 0 then
        tail = tail + 1
        queue[tail] = line
      end
      i = i + 1
    end
  end

  function request()
    if head <= tail then
      last = queue[head]
      queue[head] = nil
      head = head + 1
    end
    return wrk.format(nil, nil, nil, '{"refreshToken": "' .. (last or "") .. '"}')
  end

  function response(status, headers, body)
    if status == 200 then
      local successor = body:match('"refreshToken":%s*"([^"]+)"')
      if successor then
        tail = tail + 1
        queue[tail] = successor
      end
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "errors": %d, "duration_s": %.6f, "p50_us": %d, ' ..
    '"p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "cpu_s": %.3f, ' ..
    '"details": {"connect": %d, "read": %d, "write": %d, "non_2xx_3xx": %d, "timeout": %d}}\n',
    summary.requests, errors, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean, os.clock(),
    e.connect, e.read, e.write, e.status, e.timeout))
end
