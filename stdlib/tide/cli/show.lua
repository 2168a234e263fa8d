--- tide show RUN: the spans of a run as a tree, children under their parent in start order, each
--- with its duration and a status mark.
local q = require("tide.cli.query")

local M = {}

--- Orders spans into a tree. Returns the roots; each span gets a children list. A span whose
--- parent is unknown (not recorded) is shown as a root rather than lost.
local function tree(spans)
  local by_id = {}
  for _, s in ipairs(spans) do
    s.children = {}
    by_id[s.id] = s
  end
  local roots = {}
  for _, s in ipairs(spans) do -- already in start order
    local p = s.parent ~= 0 and s.parent ~= s.id and by_id[s.parent]
    if p then
      p.children[#p.children + 1] = s
    else
      roots[#roots + 1] = s
    end
  end
  return roots
end

local function draw(out, span, depth, plain, seen)
  if seen[span] then
    return -- a cycle: only a corrupt database has one
  end
  seen[span] = true
  local took
  if span["end"] or span.status == "running" then
    took = q.elapsed(span.start, span["end"])
  end
  local line = string.format("%s%s %-4s %s  %s", string.rep("  ", depth),
    q.mark(span.status, plain), span.kind, (span.name:gsub("[%c]", "?")), q.duration(took))
  if span.status ~= "ok" then
    line = line .. "  " .. span.status
  end
  out[#out + 1] = line
  for _, c in ipairs(span.children) do
    draw(out, c, depth + 1, plain, seen)
  end
end

function M.run(ctx, args)
  local _, pos = q.parse("show", ctx, args, {})
  if #pos > 1 then
    q.usage("show", "unexpected argument '%s'", pos[2])
  end
  local builds = require("tide.cli.builds")
  if builds.is_build_key(pos[1]) then
    return builds.show(ctx, pos[1])
  end
  local id = q.id("show", "RUN", pos[1])
  local store = q.open(ctx)
  local run = q.run(ctx, store, id)
  run.status = q.status(run)
  local spans, err = store.spans(id)
  if not spans then
    q.input("%s", err)
  end
  if run.status == "interrupted" then
    -- Its tide is gone: what still says running was cut off with it.
    for _, s in ipairs(spans) do
      if s.status == "running" then
        s.status = "interrupted"
      end
    end
  end
  -- A run that started or continued a pipeline execution shows its stages and actions too.
  local execution
  local pstate = require("tide.pipeline.state")
  if pstate.has_tables() then
    execution = require("tide.pipeline.views").execution(id)
  end
  if ctx.json then
    local json = require("tide.json")
    q.print_json({ run = run, spans = json.array(spans), pipeline = execution })
    return 0
  end
  local took
  if run.ended or run.status == "running" then
    took = q.elapsed(run.started, run.ended)
  end
  local head = string.format("run %d %s  %s  started %s  %s", run.id, run.status, run.name,
    q.time(run.started), q.duration(took))
  if run.exit_code and run.exit_code ~= 0 then
    head = head .. string.format("  exit %d", run.exit_code)
  end
  local out = { head }
  if execution then
    out[#out + 1] = require("tide.pipeline.views").execution_text(execution):sub(1, -2)
  end
  local seen = {}
  for _, root in ipairs(tree(spans)) do
    draw(out, root, 0, ctx.plain, seen)
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
  return 0
end

return M
