--- tide retry RUN [--stage NAME] [--all-actions]: continues a failed, stopped or interrupted
--- pipeline execution in this process, reusing the outputs of the actions that succeeded (which
--- run again only with --all-actions; --failed-only, the default, is accepted).
local q = require("tide.cli.query")

local M = {}

local function run(ctx, args)
  local opts, pos = q.parse("retry", ctx, args, { flags = { ["--failed-only"] = "failed_only",
    ["--all-actions"] = "all_actions" },
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
  if opts.failed_only and opts.all_actions then
    q.usage("retry", "give one of --failed-only and --all-actions")
  end
  return pcli.exit_code(pipeline.retry(plan, e.id, opts.stage,
    opts.all_actions and "ALL_ACTIONS" or "FAILED_ACTIONS"))
end

function M.run(ctx, args)
  return require("tide.pipeline.cli").guard(run, ctx, args)
end

return M
