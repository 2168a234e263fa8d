--- tide approve RUN Stage/Action [--reject] --summary "...": answers a manual approval.
local q = require("tide.cli.query")

local M = {}

local function run(ctx, args)
  local opts, pos = q.parse("approve", ctx, args, { flags = { ["--reject"] = "reject" },
    values = { ["--summary"] = "summary" } })
  if #pos ~= 2 then
    q.usage("approve", "needs RUN and Stage/Action")
  end
  local id = q.id("approve", "RUN", pos[1])
  require("tide.cli").open_store(ctx)
  local status = opts.reject and "Rejected" or "Approved"
  local exec = require("tide.pipeline").approve(id, pos[2], status, opts.summary)
  if ctx.json then
    q.print_json({ execution = exec, action = pos[2], status = status })
  else
    io.stdout:write(string.format("%s %s of execution %d\n", status:lower(), pos[2], exec))
  end
  return 0
end

function M.run(ctx, args)
  return require("tide.pipeline.cli").guard(run, ctx, args)
end

return M
