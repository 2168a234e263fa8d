--- tide transition PIPELINE|FILE.lua STAGE --disable [--reason TEXT] | --enable: closes or
--- opens the transition into a stage of a pipeline (CodePipeline's
--- Disable/EnableStageTransition).
local q = require("tide.cli.query")

local M = {}

local function run(ctx, args)
  local opts, pos = q.parse("transition", ctx, args, {
    flags = { ["--disable"] = "disable", ["--enable"] = "enable" },
    values = { ["--reason"] = "reason" } })
  if #pos ~= 2 then
    q.usage("transition", "needs PIPELINE and STAGE")
  end
  if opts.disable == opts.enable then -- both given, or neither
    q.usage("transition", "give one of --disable and --enable")
  end
  if opts.enable and opts.reason then
    q.usage("transition", "--reason goes with --disable")
  end
  require("tide.cli").open_store(ctx)
  local pipeline = require("tide.pipeline")
  -- PIPELINE is a name, or a pipeline file whose declaration names the pipeline and its stages.
  local plan
  if pos[1]:match("%.lua$") then
    plan = pipeline.load(pos[1])
    pos[1] = plan.name
  end
  pipeline.transition(pos[1], pos[2], opts.enable, opts.reason, plan)
  local word = opts.enable and "enabled" or "disabled"
  if ctx.json then
    q.print_json({ pipeline = pos[1], stage = pos[2], transition = word, reason = opts.reason })
  else
    io.stdout:write(string.format("transition into %s of %s %s\n", pos[2], pos[1], word))
  end
  return 0
end

function M.run(ctx, args)
  return require("tide.pipeline.cli").guard(run, ctx, args)
end

return M
