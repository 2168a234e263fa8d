--- tide build: runs a CodeBuild buildspec here, recorded as a build and as a tide run.
---   tide build [-f FILE] [--src DIR] [--env K=V]... [--project NAME] [--output DIR]
---              [--git URL-or-path@rev] [--network] [--no-sandbox] [--timeout 60m]
---              [--batch] [--parallel N] [--plan] [--quiet]
---              [--memory SIZE] [--pids N] [--cpu SECONDS] [--tmp-size SIZE]
local tide = require("tide")
local json = require("tide.json")

local M = {}

local function usage(fmt, ...)
  error(tide.error("EUSAGE", "build: " .. string.format(fmt, ...) .. " (see 'tide help')"), 0)
end

local VALUES = { ["-f"] = "file", ["--file"] = "file", ["--src"] = "src", ["--env"] = "env",
  ["--project"] = "project", ["--output"] = "output", ["--git"] = "git",
  ["--timeout"] = "timeout", ["--parallel"] = "parallel", ["--memory"] = "memory",
  ["--pids"] = "pids", ["--cpu"] = "cpu", ["--tmp-size"] = "tmp_size" }
local FLAGS = { ["--network"] = "network", ["--no-sandbox"] = "no_sandbox", ["--plan"] = "plan",
  ["--batch"] = "batch", ["--quiet"] = "quiet", ["--json"] = "json", ["--plain"] = "plain" }

function M.parse_args(args)
  local o = { env = {} }
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^(%-%-[%w-]+)=(.*)$")
    name = name or a
    if VALUES[name] then
      if not value then
        i = i + 1
        value = args[i] or usage("%s needs a value", name)
      end
      if VALUES[name] == "env" then
        o.env[#o.env + 1] = value
      else
        o[VALUES[name]] = value
      end
    elseif FLAGS[name] and not value then
      o[FLAGS[name]] = true
    else
      usage("unexpected argument '%s'", a)
    end
    i = i + 1
  end
  return o
end

--- "90" (minutes, as CodeBuild counts), "90s", "15m", "2h" -> seconds.
function M.duration(text)
  local n, unit = text:match("^(%d+%.?%d*)([smh]?)$")
  if not n then
    usage("--timeout expects minutes or a duration like 90s, 15m, 2h, got '%s'", text)
  end
  local mult = ({ s = 1, m = 60, h = 3600, [""] = 60 })[unit]
  return tonumber(n) * mult
end

local function status_code(status)
  if status == "SUCCEEDED" then
    return 0
  elseif status == "TIMED_OUT" then
    return 124
  elseif status == "STOPPED" then
    return 130
  end
  return 1
end

function M.run(ctx, args)
  local a = M.parse_args(args)
  if a.json then
    ctx.json = true
  end
  local bs = require("tide.buildspec")
  local limits = { memory = a.memory, pids = a.pids, cpu = a.cpu, tmp_size = a.tmp_size }
  -- A bad limit is a usage error before anything is recorded.
  require("tide.buildspec.limits").apply({}, limits)
  local envmod = require("tide.buildspec.env")
  local uv = require("tide.uv")
  local cwd = uv.cwd()
  local src = a.src and bs.abspath(a.src) or cwd
  local file = a.file
  if file and not a.git and file:sub(1, 1) ~= "/" then
    -- On the command line a relative -f is relative to where tide runs.
    file = bs.abspath(file)
  end
  if a.plan then
    local spec = bs.validate(file or (src .. "/buildspec.yml"))
    for _, line in ipairs(bs.plan(spec)) do
      io.stdout:write(line, "\n")
    end
    return 0
  end
  local cli = require("tide.cli")
  cli.open_store(ctx)
  local runtime = require("tide._runtime")
  local argv = { "build" }
  table.move(args, 1, #args, 2, argv)
  local id, msg = runtime.begin_run("build " .. (a.project or (a.git and "git" or
    src:match("([^/]+)$") or "/")), json.encode(argv))
  if not id then
    error(tide.error("EINPUT", msg), 0)
  end
  local out = ctx.json and io.stderr or io.stdout
  local r = bs.run({
    file = file, file_display = a.file, src = src, env = envmod.parse_assignments(a.env),
    project = a.project, output = a.output, git = a.git, network = a.network or false,
    sandbox = not a.no_sandbox, timeout = a.timeout and M.duration(a.timeout) or nil,
    limits = limits,
    batch = a.batch, parallel = a.parallel and math.tointeger(tonumber(a.parallel)) or nil,
    on_line = function(line)
      if not a.quiet then
        out:write(line, "\n")
        out:flush()
      end
    end,
  })
  if ctx.json then
    io.stdout:write(json.encode(r), "\n")
  elseif r.builds then
    io.stdout:write(string.format("batch %s %s\n", r.id, r.status))
    for _, m in ipairs(r.builds) do
      io.stdout:write(string.format("  %-20s %-10s %s\n", m.identifier, m.status,
        m.id or m.reason or m.error or ""))
    end
  else
    io.stdout:write(string.format("build %s #%d %s in %.2fs\n", r.id, r.number, r.status,
      r.duration or 0))
  end
  return status_code(r.status)
end

return M
