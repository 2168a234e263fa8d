--- tide: tasks, errors and the clock. The task primitives are native (tide._core); this module
--- adds what is better said in Lua.
local core = require("tide._core")

local M = {
  version = core.version,
  spawn = core.spawn,
  sleep = core.sleep,
  current = core.current,
  wait_any = core.wait_any,
  error = core.error,
  is_error = core.is_error,
  now = core.now,
  monotime = core.monotime,
}

--- Raises a TideError {code, message}, with message formatted like string.format.
function M.raise(code, fmt, ...)
  error(core.error(code, select("#", ...) > 0 and fmt:format(...) or fmt), 2)
end

--- text with every value registered for masking in this run (secrets and SecureString parameters
--- it has read) replaced by "***", in the forms docs/secrets.md lists. For writers of run output
--- that do not go through processes, errors and spans, which are masked already.
function M.mask(text)
  return require("tide._secret").mask_text(text)
end

--- n random bytes from the kernel (getrandom), as 2n lowercase hex digits: names and nonces
--- that must not repeat or be guessed.
function M.random_hex(n)
  local b = require("luv").random(n)
  return string.format(string.rep("%02x", n), b:byte(1, n))
end

local function as_task(v, i)
  if type(v) == "function" then
    return core.spawn(v)
  end
  if type(v) ~= "userdata" then
    M.raise("EINPUT", "tide.all: item %d is a %s, not a task or a function", i, type(v))
  end
  return v
end

--- Waits for every task (or function, spawned here) in list and returns their first results in
--- order. The first failure cancels the others and is raised.
function M.all(list, timeout)
  local tasks, pending = {}, {}
  for i, v in ipairs(list) do
    tasks[i] = as_task(v, i)
    pending[i] = tasks[i]
  end
  local deadline = timeout and core.monotime() + timeout
  while #pending > 0 do
    local left = deadline and math.max(0, deadline - core.monotime())
    local k, msg, code = core.wait_any(pending, left)
    if not k then
      for _, t in ipairs(pending) do
        t:cancel()
      end
      error(core.error(code, "tide.all: " .. msg), 2)
    end
    -- Sweep out every finished task, not just the k-th: one wake often finishes many (timers
    -- due together), and waiting again on n tasks costs O(n).
    local j = 0
    for i = 1, #pending do
      local t = pending[i]
      local status = t:status()
      if status == "failed" or status == "cancelled" then
        for _, o in ipairs(pending) do
          o:cancel()
        end
        t:wait() -- raises the task's error
      elseif status ~= "done" then
        j = j + 1
        pending[j] = t
      end
    end
    for i = #pending, j + 1, -1 do
      pending[i] = nil
    end
  end
  local results = {}
  for i, t in ipairs(tasks) do
    results[i] = t:wait()
  end
  return results
end

--- Runs fn(...) and returns true, results; or false, the error (TideErrors intact). Cancellation
--- is not caught: it propagates like any blocking call in a cancelled task.
function M.try(fn, ...)
  local r = table.pack(pcall(fn, ...))
  if not r[1] and core.is_error(r[2]) and r[2].code == "ECANCELED" then
    error(r[2], 0)
  end
  return table.unpack(r, 1, r.n)
end

return M
