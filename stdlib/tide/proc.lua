--- tide.proc: run programs from a task.
---
---   local r = proc.run{"make", "-C", "api", "test", timeout = 600}
---   if not r.ok then print(r.code, r.stderr) end
---   proc.run{"make test", shell = true, check = true}     -- raises EPROC on failure
---   proc.sh("ls | wc -l")
---   local p <close> = proc.spawn{"server", on_line = print} -- killed when p goes out of scope
---
--- Only the calling task waits. A non-zero exit is data (r.code) unless check = true. A program
--- that cannot start raises ENOENT (or EACCES, ...) naming it. Output is captured up to
--- max_output bytes per stream and, when the run is recorded, kept in full in the run's log.
--- The native side is tide._proc (lua/lproc.c); this module adds shells, handlers and checks.
local tide = require("tide")
local native = require("tide._proc")

local M = {}

local option_keys = {
  shell = true, env = true, env_mode = true, cwd = true, stdin = true, max_output = true,
  on_line = true, on_stdout = true, on_stderr = true, timeout = true, grace = true,
  check = true, name = true, log = true, sandbox = true, stdout_batch = true,
}
-- Passed through to the native spawn unchanged; it checks their types.
local native_keys = {
  "env", "env_mode", "cwd", "stdin", "max_output", "timeout", "grace", "log", "sandbox",
  "stdout_batch",
}

local function input_error(where, fmt, ...)
  error(tide.error("EINPUT", where .. ": " .. string.format(fmt, ...)), 3)
end

--- Quotes an argument for display when it would be ambiguous unquoted.
local function quote(a)
  if a == "" or a:find("[%s'\"\\$`]") then
    return "'" .. a:gsub("'", "'\\''") .. "'"
  end
  return a
end

local function display(argv)
  local parts = {}
  for i, a in ipairs(argv) do
    parts[i] = quote(a)
  end
  return table.concat(parts, " ")
end

--- Checks opts strictly and returns the native spawn table and the Lua-side settings.
local function build(opts, where)
  if type(opts) ~= "table" then
    input_error(where, "expected an option table, got %s", type(opts))
  end
  local n = rawlen(opts)
  local argv = {}
  for k, v in pairs(opts) do
    if math.type(k) == "integer" and k >= 1 and k <= n then
      local t = type(v)
      if t == "number" then
        v = tostring(v)
      elseif t ~= "string" then
        input_error(where, "argument %d must be a string, got %s", k, t)
      end
      argv[k] = v
    elseif type(k) ~= "string" or not option_keys[k] then
      input_error(where, "unexpected key '%s'", tostring(k))
    end
  end
  if n == 0 then
    input_error(where, "no command given")
  end
  for _, k in ipairs({ "on_line", "on_stdout", "on_stderr" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then
      input_error(where, "option '%s' must be a function, got %s", k, type(opts[k]))
    end
  end
  local name = opts.name
  local spec
  if opts.shell then
    -- Extra array items become $1, $2, ... of the script, so they need no quoting.
    spec = { "/bin/sh", "-c", argv[1] }
    if n > 1 then
      spec[4] = "sh"
      table.move(argv, 2, n, 5, spec)
    end
    name = name or argv[1]
  else
    spec = argv
    name = name or display(argv)
  end
  for _, k in ipairs(native_keys) do
    spec[k] = opts[k]
  end
  spec.name = name
  local info = {
    where = where,
    name = name,
    check = opts.check,
    timeout = opts.timeout,
    on_line = opts.on_line,
    on_stdout = opts.on_stdout,
    on_stderr = opts.on_stderr,
  }
  if info.on_line or info.on_stdout or info.on_stderr then
    spec.lines = true
  end
  return spec, info
end

local function start(spec, info)
  local ok, p, msg, code = pcall(native.spawn, spec)
  if not ok then
    -- A bad option: the native message, under the caller's name.
    local text = tostring(p):gsub("^spawn: ", "")
    error(tide.error("EINPUT", info.where .. ": " .. text), 3)
  end
  if not p then
    error(tide.error(code, (msg:gsub("^spawn: ", info.where .. ": "))), 3)
  end
  return p
end

local function dispatch(info, streams, lines)
  local on_line, on_stdout, on_stderr = info.on_line, info.on_stdout, info.on_stderr
  for i = 1, #lines do
    local s, l = streams[i], lines[i]
    if on_line then
      on_line(l, s)
    end
    if s == "stdout" then
      if on_stdout then
        on_stdout(l)
      end
    elseif on_stderr then
      on_stderr(l)
    end
  end
end

--- Waits for the result, calling the line handlers in this task as lines arrive. Returns the
--- result, or nil, msg, "ETIMEDOUT" when timeout seconds pass first.
local function drain(p, info, timeout)
  local deadline = timeout and tide.monotime() + timeout
  while true do
    local left = deadline and math.max(0, deadline - tide.monotime())
    local r, streams, lines = p:wait(left)
    if r ~= "lines" then
      return r, streams, lines
    end
    -- A handler that raises (or is cancelled) leaves nobody to take the lines: terminate the
    -- process rather than leave it blocked on a full pipe. A to-be-closed guard, not pcall, so
    -- the error keeps its traceback.
    local _ <close> = setmetatable({}, { __close = function(_, err)
      if err ~= nil then
        p:close()
      end
    end })
    dispatch(info, streams, lines)
  end
end

local function finish(r, info)
  r.cmd = info.name
  if not info.check or r.ok then
    return r
  end
  local what = "'" .. info.name .. "'"
  if r.timed_out then
    error(tide.error("ETIMEDOUT", string.format("%s timed out after %g s", what, info.timeout),
      { result = r }), 3)
  elseif r.signal then
    error(tide.error("EPROC", string.format("%s was killed by signal %s", what, r.signal),
      { result = r }), 3)
  end
  error(tide.error("EPROC", string.format("%s exited with %d", what, r.code), { result = r }), 3)
end

--- Runs a program and returns its result once it has exited and its output is complete:
--- {ok, code, signal, timed_out, stdout, stderr, stdout_truncated, stderr_truncated,
---  stdout_bytes, stderr_bytes, pid, wall, cpu_user, cpu_sys, max_rss, log, cmd, ...}.
function M.run(opts)
  local spec, info = build(opts, "proc.run")
  local p <close> = start(spec, info)
  return finish(drain(p, info), info)
end

--- Runs cmd with /bin/sh -c; opts as for run.
function M.sh(cmd, opts)
  if type(cmd) ~= "string" then
    input_error("proc.sh", "command must be a string, got %s", type(cmd))
  end
  local o = {}
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  o[1], o.shell = cmd, true
  local spec, info = build(o, "proc.sh")
  local p <close> = start(spec, info)
  return finish(drain(p, info), info)
end

-- A running process started by proc.spawn.
local Process = {}
Process.__index = Process

--- Waits for the result (line handlers run meanwhile, in this task). With a timeout, returns
--- nil, msg, "ETIMEDOUT" when it passes first; the process keeps running.
function Process:wait(timeout)
  local r, msg, code = drain(self._p, self._info, timeout)
  if not r then
    return nil, msg, code
  end
  return finish(r, self._info)
end

--- Sends a signal ("TERM" by default, "KILL", "INT", ... or a number) to the process group.
function Process:kill(sig)
  return self._p:kill(sig)
end

--- Queues data for the process's stdin (spawned with stdin = true).
function Process:write(data)
  return self._p:write(data)
end

function Process:close_stdin()
  return self._p:close_stdin()
end

function Process:pid()
  return self._p:pid()
end

--- Terminates the process if it still runs (TERM, grace, KILL) and lets go of it. Never blocks.
function Process:close()
  return self._p:close()
end

Process.__close = Process.close

function Process:__tostring()
  return string.format("tide.proc.Process (%s) %s", self._info.name, tostring(self._p))
end

--- Starts a program and returns a Process without waiting. Same options as run, plus
--- stdin = true for a pipe fed with p:write(data) and p:close_stdin().
function M.spawn(opts)
  local spec, info = build(opts, "proc.spawn")
  return setmetatable({ _p = start(spec, info), _info = info }, Process)
end

--- The name of a signal number ("TERM" for 15), or nil.
M.signame = native.signame

return M
