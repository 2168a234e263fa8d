--- What the pipeline commands share: running a script's pipeline (tide run), and beginning a
--- recorded run for the commands that drive an execution (retry, watch).
local tide = require("tide")
local json = require("tide.json")

local M = {}

local function usage(cmd, fmt, ...)
  error(tide.error("EUSAGE", cmd .. ": " .. string.format(fmt, ...) .. " (see 'tide help')"), 0)
end
M.usage = usage

local EXIT = { Succeeded = 0, DryRun = 0, Superseded = 0 }

function M.exit_code(status)
  return EXIT[status] or 1
end

--- Options of `tide run PIPELINE.lua`: --var k=v (repeatable), --dry-run, --new, and the
--- internal --trigger ID, --rollback STAGE --target ID [--pending ID].
function M.parse_run(args)
  local opts = { vars = {} }
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^(%-%-[%w-]+)=(.*)$")
    name = name or a
    local function val()
      if value then
        return value
      end
      i = i + 1
      return args[i] or usage("run", "%s needs a value", name)
    end
    if name == "--var" then
      local kv = val()
      local k, v = kv:match("^([^=]+)=(.*)$")
      if not k then
        usage("run", "--var takes NAME=VALUE, not '%s'", kv)
      end
      opts.vars[k] = v
    elseif name == "--dry-run" then
      opts.dry_run = true
    elseif name == "--new" then
      opts.new = true
    elseif name == "--trigger" then
      opts.trigger = math.tointeger(tonumber(val())) or usage("run", "--trigger needs an id")
    elseif name == "--rollback" then
      opts.rollback = val()
    elseif name == "--target" then
      opts.target = val()
    elseif name == "--pending" then
      opts.pending = math.tointeger(tonumber(val())) or usage("run", "--pending needs an id")
    else
      usage("run", "unknown pipeline option '%s'", a)
    end
    i = i + 1
  end
  if opts.rollback and not opts.target then
    usage("run", "--rollback needs --target EXECUTION")
  end
  return opts
end

--- Runs decl (what the script file returned) as a pipeline in the current run.
function M.run_script(file, args, decl)
  local pipeline = require("tide.pipeline")
  local opts = M.parse_run(args)
  local plan = pipeline.validate(decl, file)
  return M.exit_code(pipeline.run(plan, opts))
end

--- Calls fn(); a conflict with the execution's state (ECONFLICT: not waiting, not running, a
--- newer execution...) is one line on stderr and exit 1, like a failed run, not a traceback.
function M.guard(fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then
    return res
  end
  if type(res) == "table" and res.code == "ECONFLICT" then
    io.stderr:write("tide: ", tostring(res.message), "\n")
    return 1
  end
  error(res, 0)
end

--- Opens the store for writing and begins a run named name (for retry and watch).
function M.begin(ctx, name, argv)
  require("tide.cli").open_store(ctx)
  local runtime = require("tide._runtime")
  local id, msg = runtime.begin_run(name, json.encode(argv))
  if not id then
    error(tide.error("EINPUT", msg), 0)
  end
  runtime.start_view(ctx.plain and "plain" or "auto")
  return id
end

return M
