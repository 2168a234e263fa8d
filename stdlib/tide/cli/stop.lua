--- tide stop RUN [--abandon]: stops a pipeline execution; running actions finish, or with
--- --abandon are abandoned.
local q = require("tide.cli.query")

local M = {}

local function run(ctx, args)
  local opts, pos = q.parse("stop", ctx, args, { flags = { ["--abandon"] = "abandon" } })
  if #pos ~= 1 then
    q.usage("stop", "needs RUN")
  end
  local id = q.id("stop", "RUN", pos[1])
  require("tide.cli").open_store(ctx)
  local pipeline = require("tide.pipeline")
  local e = pipeline.find_execution(id)
  local status = pipeline.stop(id, opts.abandon and "abandon" or "stop")
  if ctx.json then
    q.print_json({ execution = e.id, status = status })
  else
    io.stdout:write(string.format("execution %d %s\n", e.id, status:lower()))
  end
  return 0
end

function M.run(ctx, args)
  return require("tide.pipeline.cli").guard(run, ctx, args)
end

return M
