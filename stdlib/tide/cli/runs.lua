--- tide runs [--limit N] [--pipeline NAME]: the most recent runs, newest first.
local q = require("tide.cli.query")

local M = {}

local DEFAULT_LIMIT = 20

function M.run(ctx, args)
  local opts, pos = q.parse("runs", ctx, args, { values = { ["--limit"] = "limit",
    ["--pipeline"] = "pipeline" } })
  if #pos > 0 then
    q.usage("runs", "unexpected argument '%s'", pos[1])
  end
  local limit = opts.limit and q.id("runs", "--limit", opts.limit) or DEFAULT_LIMIT
  local store = q.open(ctx)
  local runs = {}
  if store then
    local err
    runs, err = store.runs(limit)
    if not runs then
      q.input("%s", err)
    end
  end
  if opts.pipeline then
    -- Only the runs that started or continued an execution of that pipeline.
    local keep = {}
    local pstate = require("tide.pipeline.state")
    if store and pstate.has_tables() then
      for _, row in ipairs(pstate.db().rows("SELECT r.run_id FROM pipeline_runs r JOIN "
        .. "pipeline_executions e ON e.id = r.execution WHERE e.pipeline = ?", opts.pipeline)) do
        keep[row.run_id] = true
      end
    end
    local kept = {}
    for _, r in ipairs(store and store.runs(0) or {}) do
      if keep[r.id] and #kept < limit then
        kept[#kept + 1] = r
      end
    end
    runs = kept
  end
  for _, r in ipairs(runs) do
    r.status = q.status(r)
  end
  if ctx.json then
    q.print_json(require("tide.json").array(runs))
    return 0
  end
  if #runs == 0 then
    io.stdout:write("no runs in '", ctx.home, "'\n")
    return 0
  end
  local rows = { { "ID", "STATUS", "STARTED", "DURATION", "NAME" } }
  for _, r in ipairs(runs) do
    -- A run still going shows its time so far; one whose tide vanished unrecorded shows none.
    local took
    if r.ended or r.status == "running" then
      took = q.elapsed(r.started, r.ended)
    end
    rows[#rows + 1] = { tostring(r.id), r.status, q.time(r.started), q.duration(took), r.name }
  end
  io.stdout:write(table.concat(q.columns(rows, { 1, 4 }), "\n"), "\n")
  return 0
end

return M
