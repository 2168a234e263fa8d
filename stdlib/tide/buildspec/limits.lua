--- tide.buildspec.limits: the resource limits of a build's sandbox, and who runs its commands.
--- A build runs whatever its source says, so by default it gets bounds that a real build fits
--- in but that stop a fork bomb, a runaway allocation or a filled /tmp from taking the machine
--- down: 4096 processes, 3/4 of the machine's memory, 65536 open files per process (at most
--- tide's own hard limit) and a 2G /tmp. No CPU time limit by default (the build's timeout
--- bounds it). Each can be overridden (tide build --pids, --memory, --cpu, --tmp-size; the
--- `limits` option of tide.buildspec.run).
local tide = require("tide")
local uv = require("tide.uv")

local M = {}

M.PIDS = 4096
M.NOFILE = 65536
M.TMP_SIZE = "2G"

-- The machine's memory, read once (from /proc/meminfo: more than a build's own setup costs).
local total_memory

--- The default memory limit: 3/4 of the machine's memory, in bytes.
function M.default_memory()
  total_memory = total_memory or uv.get_total_memory and uv.get_total_memory() or 0
  if total_memory <= 0 then
    return nil
  end
  return math.floor(total_memory * 3 / 4)
end

-- An unprivileged process cannot raise its hard limit: never ask the sandbox for more.
local function hard_nofile()
  local f = io.open("/proc/self/limits")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  local hard = text:match("Max open files%s+%S+%s+(%S+)")
  return math.tointeger(tonumber(hard))
end

-- The sandbox's open-file limit: read once, this process's hard limit does not change.
local nofile

local function size(name, v)
  if math.type(v) == "integer" and v > 0 then
    return v
  end
  if type(v) == "string" and v:match("^%d+[KkMmGgTt]?$") and not v:match("^0+%a?$") then
    return v:upper()
  end
  error(tide.error("EINPUT", string.format("%s: expected a size like 512M or 4G, got '%s'",
    name, tostring(v))), 0)
end

local function count(name, v)
  local n = math.tointeger(tonumber(v))
  if not n or n <= 0 then
    error(tide.error("EINPUT", string.format("%s: expected a positive integer, got '%s'",
      name, tostring(v))), 0)
  end
  return n
end

--- Sets the limits on the sandbox policy table, the defaults under over = {pids, memory,
--- cpu, tmp_size} (strings or numbers, from the command line or the caller). Returns the
--- policy.
function M.apply(sandbox, over)
  over = over or {}
  sandbox.pids = over.pids and count("pids", over.pids) or M.PIDS
  sandbox.memory = over.memory and size("memory", over.memory) or M.default_memory()
  sandbox.tmp_size = over.tmp_size and size("tmp-size", over.tmp_size) or M.TMP_SIZE
  nofile = nofile or math.min(M.NOFILE, hard_nofile() or M.NOFILE)
  sandbox.nofile = nofile
  if over.cpu then
    sandbox.cpu_seconds = count("cpu", over.cpu)
  end
  return sandbox
end

--- The uid and gid of a user of the host's /etc/passwd (a name or a number), or nil.
function M.user_ids(name, passwd)
  local f = io.open(passwd or "/etc/passwd")
  if not f then
    return nil
  end
  for line in f:lines() do
    local user, uid, gid = line:match("^([^:]*):[^:]*:(%d+):(%d+):")
    if user and (user == name or uid == name) then
      f:close()
      return { uid = math.tointeger(tonumber(uid)), gid = math.tointeger(tonumber(gid)) }
    end
  end
  f:close()
  return nil
end

--- The run-as user the whole build runs as (a top-level run-as, or one user shared by every
--- phase that names one), or nil.
function M.build_user(spec)
  local user = spec.run_as
  if user then
    return user
  end
  for _, ph in pairs(spec.phases or {}) do
    if type(ph) == "table" and ph.run_as and ph.run_as ~= "root" then
      if user and ph.run_as ~= user then
        return nil
      end
      user = ph.run_as
    end
  end
  return user
end

return M
