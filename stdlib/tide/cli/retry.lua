--- tide retry RUN [--stage NAME] [--failed-only]: continues a failed, stopped or interrupted
--- pipeline execution in this process, reusing the outputs of the actions that succeeded.
local q = require("tide.cli.query")

local M = {}

local function run(ctx, args)
  local opts, pos = q.parse("retry", ctx, args, { flags = { ["--failed-only"] = "failed_only" },
    values = { ["--stage"] = "stage" } })
  if #pos ~= 1 then
    q.usage("retry", "needs RUN")
  end
  local id = q.id("retry", "RUN", pos[1])
  local pcli = require("tide.pipeline.cli")
  pcli.begin(ctx, "retry " .. id, { "retry", table.unpack(args) })
  local pipeline = require("tide.pipeline")
  local e = pipeline.find_execution(id)
  local plan = pipeline.load(e.file)
  return pcli.exit_code(pipeline.retry(plan, e.id, opts.stage, opts.failed_only))
end

function M.run(ctx, args)
  return require("tide.pipeline.cli").guard(run, ctx, args)
end

return M
