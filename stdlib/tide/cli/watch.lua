--- tide watch PIPELINE.lua [--interval S] [--once]: runs the pipeline's triggers: polls its git
--- sources and its schedules and starts an execution for each push or tick that matches.
local q = require("tide.cli.query")

local M = {}

function M.run(ctx, args)
  local opts, pos = q.parse("watch", ctx, args, { flags = { ["--once"] = "once" },
    values = { ["--interval"] = "interval" } })
  if #pos ~= 1 then
    q.usage("watch", "needs PIPELINE.lua")
  end
  local interval = tonumber(opts.interval or "10")
  if not interval or interval <= 0 then
    q.usage("watch", "--interval must be a positive number of seconds")
  end
  local pipeline = require("tide.pipeline")
  local plan = pipeline.load(pos[1])
  require("tide.pipeline.cli").begin(ctx, "watch " .. pos[1], { "watch", table.unpack(args) })
  require("tide.pipeline.triggers").watch(plan, { interval = interval, once = opts.once,
    home = ctx.home })
  return 0
end

return M
