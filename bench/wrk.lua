-- The wrk script of the bench: bench/wrk.py fills in the first block per measurement.
-- Static requests stay static (wrk's fast path). Otherwise request() builds each one:
-- - token_file: a refresh presenting a token never presented before: this thread's share
--   of the file, then the successors that the 200 answers return;
-- - access_file: the next access token of this thread's share in x-access-token;
-- - junk_paths: POST {"refreshToken": <random>} to each path in turn;
-- - forwarded {first address as a number, pool size}: the next address of the pool in
--   X-Forwarded-For.
-- With `expected`, answers are looked at: statuses neither 2xx nor expected are errors.
wrk.method = __METHOD__
wrk.body = __BODY__
local token_file = __TOKEN_FILE__
local access_file = __ACCESS_FILE__
local junk_paths = __JUNK_PATHS__
local forwarded = __FORWARDED__
local expected = __EXPECTED__
local nthreads = __THREADS__

local threads, started = {}, 0

function setup(thread)
  thread:set("tid", started)
  started = started + 1
  table.insert(threads, thread)
end

-- Globals, so that done() can read each thread's through thread:get.
unexpected, limited, repeated = 0, 0, 0

local function share(path)
  local lines, i = {}, 0
  for line in io.lines(path) do
    if i % nthreads == tid and #line > 0 then
      lines[#lines + 1] = line
    end
    i = i + 1
  end
  return lines
end

local function address(n)
  local a = forwarded[1] + n % forwarded[2]
  return string.format("%d.%d.%d.%d", math.floor(a / 16777216) % 256,
    math.floor(a / 65536) % 256, math.floor(a / 256) % 256, a % 256)
end

local function junk_token()
  local r = math.random
  return string.format("%08x%08x%08x%08x%08x%03x", r(0, 2147483646), r(0, 2147483646),
    r(0, 2147483646), r(0, 2147483646), r(0, 2147483646), r(0, 4095))
end

if token_file or access_file or junk_paths or forwarded then
  local queue, head, tail, last = {}, 1, 0, nil
  local access, sent = nil, 0

  function init(args)
    math.randomseed(os.time() * 1000 + tid)
    if token_file then
      for _, line in ipairs(share(token_file)) do
        tail = tail + 1
        queue[tail] = line
      end
    end
    if access_file then
      access = share(access_file)
    end
  end

  function request()
    sent = sent + 1
    if forwarded then
      wrk.headers["X-Forwarded-For"] = address(sent * nthreads + tid)
    end
    if access then
      if sent > #access then
        repeated = repeated + 1
      end
      wrk.headers["x-access-token"] = access[(sent - 1) % #access + 1]
      return wrk.format()
    end
    if token_file then
      if head <= tail then
        last = queue[head]
        queue[head] = nil
        head = head + 1
      else
        repeated = repeated + 1
      end
      return wrk.format(nil, nil, nil, '{"refreshToken": "' .. (last or "") .. '"}')
    end
    if junk_paths then
      local path = junk_paths[sent % #junk_paths + 1]
      return wrk.format("POST", path, nil, '{"refreshToken": "' .. junk_token() .. '"}')
    end
    return wrk.format()
  end

  if token_file or expected then
    function response(status, headers, body)
      if status == 429 then
        limited = limited + 1
      end
      if status == 200 and token_file then
        local successor = body:match('"refreshToken":%s*"([^"]+)"')
        if successor then
          tail = tail + 1
          queue[tail] = successor
        end
      elseif expected and status > 399 and not expected[status] then
        unexpected = unexpected + 1
      end
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local u, l, r = 0, 0, 0
  for _, thread in ipairs(threads) do
    u = u + (thread:get("unexpected") or 0)
    l = l + (thread:get("limited") or 0)
    r = r + (thread:get("repeated") or 0)
  end
  local status_errors = e.status
  if expected then
    status_errors = u
  end
  local errors = e.connect + e.read + e.write + e.timeout + status_errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "errors": %d, "duration_s": %.6f, "p50_us": %d, ' ..
    '"p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "cpu_s": %.3f, ' ..
    '"details": {"connect": %d, "read": %d, "write": %d, "non_2xx_3xx": %d, ' ..
    '"timeout": %d, "limited": %d, "repeated": %d}}\n',
    summary.requests, errors, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean, os.clock(),
    e.connect, e.read, e.write, e.status, e.timeout, l, r))
end
