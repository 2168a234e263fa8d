--- The command line: global options, then a subcommand or a script.
---   tide [--home DIR] [--json] [--plain] COMMAND [ARGS]
---   tide [--home DIR] [--plain] FILE.lua [ARGS]
--- Each command lives in tide.cli.<name> and exports run(ctx, args) -> exit code.
local tide = require("tide")

local M = {}

-- name -> one line of help; the order is the order of `tide help`.
M.commands = {
  { "run", "run FILE.lua [ARGS]      run a script (same as tide FILE.lua)" },
  { "runs", "runs [--limit N] [--pipeline NAME]   list recent runs" },
  { "show", "show RUN                  the spans of a run as a tree, with durations and status" },
  { "logs", "logs RUN [SPAN] [-f]      the output of a run's processes" },
  { "artifact", "artifact SUBCOMMAND       the artifact store: push, pull, ls, info, verify, gc" },
  { "reports", "reports [BUILD] [--failed] test and coverage reports of builds" },
  { "graph", "graph FILE.lua [--dot]    draw a pipeline from its declaration; nothing runs" },
  { "approve", "approve RUN Stage/Action [--reject] --summary TEXT   answer a manual approval" },
  { "retry", "retry RUN [--stage S] [--failed-only | --all-actions]   continue a failed pipeline" },
  { "stop", "stop RUN [--abandon]      stop a pipeline execution" },
  { "transition", "transition PIPELINE STAGE --disable [--reason R] | --enable   gate a stage" },
  { "watch", "watch FILE.lua            start pipeline executions on git pushes and schedules" },
  { "build", "build [-f FILE] [--src DIR] [--env K=V]  run a CodeBuild buildspec (docs/build.md)" },
  { "builds", "builds [--project NAME]   list recent builds" },
  { "secret", "secret put|get|ls|versions|rotate|rm|restore NAME  the secret store" },
  { "param", "param put|get|ls|history|label|unlabel|rm NAME      the parameter store" },
  { "store", "store rekey               new master key, every secret value re-sealed" },
  { "audit", "audit verify|ls           the secret store's hash-chained audit log" },
  { "version", "version                   print the version" },
  { "help", "help                      this text" },
}

local known = {}
for _, c in ipairs(M.commands) do
  known[c[1]] = true
end

function M.usage_error(fmt, ...)
  error(tide.error("EUSAGE", string.format(fmt, ...) .. " (see 'tide help')"), 0)
end

function M.help()
  local out = { "usage: tide [--home DIR] [--json] [--plain] COMMAND [ARGS]",
    "       tide [--home DIR] [--plain] FILE.lua [ARGS]", "", "commands:" }
  for _, c in ipairs(M.commands) do
    out[#out + 1] = "  " .. c[2]
  end
  out[#out + 1] = ""
  out[#out + 1] = "options:"
  out[#out + 1] = "  --home DIR   state directory (default $TIDE_HOME, else ./.tide)"
  out[#out + 1] = "  --json       machine-readable output"
  out[#out + 1] = "  --plain      plain lines, no live view, even on a terminal"
  io.stdout:write(table.concat(out, "\n"), "\n")
  return 0
end

--- Parses the global options at the front of argv. Returns ctx and the index of the first
--- argument that is not a global option.
local function parse_globals(argv)
  local ctx = { exe = argv[0], json = false, plain = false }
  local i = 1
  while argv[i] do
    local a = argv[i]
    if a == "--home" then
      ctx.home = argv[i + 1] or M.usage_error("--home needs a directory")
      i = i + 2
    elseif a:match("^%-%-home=") then
      ctx.home = a:sub(8)
      i = i + 1
    elseif a == "--json" then
      ctx.json = true
      i = i + 1
    elseif a == "--plain" then
      ctx.plain = true
      i = i + 1
    elseif a == "--help" or a == "-h" then
      ctx.help = true
      i = i + 1
    elseif a == "--" then
      i = i + 1
      break
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      M.usage_error("unknown option '%s'", a)
    else
      break
    end
  end
  ctx.home = ctx.home or os.getenv("TIDE_HOME")
  if not ctx.home or ctx.home == "" then
    ctx.home = ".tide"
  end
  return ctx, i
end

--- Opens the store for ctx (once); raises a one-line EINPUT error naming the place.
function M.open_store(ctx, readonly)
  local runtime = require("tide._runtime")
  local ok, msg = runtime.open_store(ctx.home, readonly)
  if not ok then
    error(tide.error("EINPUT", msg), 0)
  end
end

function M.main(argv)
  local ctx, i = parse_globals(argv)
  local cmd = argv[i]
  if ctx.help or not cmd then
    return M.help()
  end
  local rest = table.move(argv, i + 1, #argv, 1, {})
  if cmd == "help" then
    return M.help()
  elseif cmd == "version" then
    io.stdout:write("tide ", tide.version, "\n")
    return 0
  elseif cmd == "run" then
    local file = table.remove(rest, 1) or M.usage_error("run needs a script file")
    return require("tide.cli.script").run(ctx, file, rest)
  elseif known[cmd] then
    return require("tide.cli." .. cmd).run(ctx, rest)
  end
  -- Anything else is a script path: `tide FILE.lua`, and busted's `tide /usr/bin/busted ...`.
  return require("tide.cli.script").run(ctx, cmd, rest)
end

return M
