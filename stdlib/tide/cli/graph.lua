--- tide graph PIPELINE.lua [--dot]: the pipeline drawn from its declaration; nothing runs.
local q = require("tide.cli.query")

local M = {}

function M.run(ctx, args)
  local opts, pos = q.parse("graph", ctx, args, { flags = { ["--dot"] = "dot" } })
  if #pos ~= 1 then
    q.usage("graph", "%s", pos[2] and ("unexpected argument '" .. pos[2] .. "'")
      or "missing PIPELINE.lua")
  end
  local pipeline = require("tide.pipeline")
  local plan = pipeline.load(pos[1])
  if not plan then
    q.input("%s: the script does not return a pipeline table", pos[1])
  end
  if ctx.json then
    local views = require("tide.pipeline.views")
    q.print_json(views.plan_table(plan))
    return 0
  end
  io.stdout:write(pipeline.graph(plan, opts.dot and "dot" or "text"))
  return 0
end

return M
