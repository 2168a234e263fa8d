--- Pictures of pipelines: the declaration as text or Graphviz DOT (nothing runs), and an
--- execution's stages and actions for tide show (text or a JSON-ready table).
local state = require("tide.pipeline.state")

local M = {}

local function kind_of(a)
  local k = a.category
  if a.user_kind then
    k = k .. " (" .. a.user_kind .. ")"
  end
  return k
end

local function arrows(a)
  local s = ""
  if #a.inputs > 0 then
    s = s .. "  <- " .. table.concat(a.inputs, ", ")
  end
  if #a.outputs > 0 then
    s = s .. "  -> " .. table.concat(a.outputs, ", ")
  end
  if a.namespace then
    s = s .. "  #{" .. a.namespace .. ".*}"
  end
  return s
end

--- The declaration as indented text: stages in order, actions under their runOrder.
function M.graph_text(plan)
  local out = { string.format("pipeline %s (%s)", plan.name, plan.mode) }
  for _, t in ipairs(plan.triggers) do
    if t.kind == "schedule" then
      out[#out + 1] = "  trigger: schedule " .. t.schedule
    else
      local f = {}
      for _, key in ipairs({ "branches", "tags", "paths" }) do
        if t[key] then
          local s = key .. " " .. table.concat(t[key].includes, ",")
          if #t[key].excludes > 0 then
            s = s .. " except " .. table.concat(t[key].excludes, ",")
          end
          f[#f + 1] = s
        end
      end
      out[#out + 1] = string.format("  trigger: push to %s%s", t.git,
        #f > 0 and (" (" .. table.concat(f, "; ") .. ")") or "")
    end
  end
  for i, s in ipairs(plan.stages) do
    local conds = {}
    for _, key in ipairs({ "before_entry", "on_success", "on_failure" }) do
      if s[key] then
        conds[#conds + 1] = key .. " " .. s[key].result
      end
    end
    out[#out + 1] = string.format("%d. %s%s", i, s.name,
      #conds > 0 and ("  [" .. table.concat(conds, ", ") .. "]") or "")
    for _, g in ipairs(s.groups) do
      for j, a in ipairs(g) do
        out[#out + 1] = string.format("   %s %d %s  %s%s", j == 1 and "|" or " ", a.run_order,
          a.name, kind_of(a), arrows(a))
      end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

local function q(s)
  return '"' .. tostring(s):gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"'
end

--- The declaration as a Graphviz digraph: one cluster per stage, an edge for each artifact and
--- from each runOrder group to the next.
function M.graph_dot(plan)
  local out = { "digraph " .. q(plan.name) .. " {", "  rankdir=LR;", "  node [shape=box];" }
  local producer = {}
  local prev_last
  for i, s in ipairs(plan.stages) do
    out[#out + 1] = string.format("  subgraph cluster_%d {", i)
    out[#out + 1] = "    label=" .. q(s.name) .. ";"
    for _, a in ipairs(s.actions) do
      out[#out + 1] = string.format("    %s [label=%s];", q(a.id),
        q(a.name .. "\n" .. kind_of(a)))
      for _, o in ipairs(a.outputs) do
        producer[o] = a
      end
    end
    out[#out + 1] = "  }"
    for gi, g in ipairs(s.groups) do
      local before = gi == 1 and prev_last or s.groups[gi - 1]
      for _, p in ipairs(before or {}) do
        for _, a in ipairs(g) do
          out[#out + 1] = string.format("  %s -> %s [style=dotted];", q(p.id), q(a.id))
        end
      end
    end
    prev_last = s.groups[#s.groups]
  end
  for _, s in ipairs(plan.stages) do
    for _, a in ipairs(s.actions) do
      for _, i in ipairs(a.inputs) do
        if producer[i] then
          out[#out + 1] = string.format("  %s -> %s [label=%s];", q(producer[i].id), q(a.id), q(i))
        end
      end
    end
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

local function secs(a, b)
  if not a then
    return nil
  end
  return ((b or state.now_us()) - a) / 1e6
end

--- An execution as a table: stages with their actions, statuses, durations, revisions,
--- artifacts and outputs. nil when id is neither an execution nor a run that drove one.
function M.execution(id)
  local e = state.execution(id) or state.execution_of_run(id)
  if not e then
    return nil
  end
  local json = require("tide.json")
  local trigger = state.decode(e.trigger)
  local runs = {}
  for _, r in ipairs(state.db().rows("SELECT run_id FROM pipeline_runs WHERE execution = ? "
    .. "ORDER BY run_id", e.id)) do
    runs[#runs + 1] = r.run_id
  end
  local out = { id = e.id, pipeline = e.pipeline, status = state.shown_status(e), mode = e.mode,
    kind = e.kind, target = e.target, message = e.message, trigger = trigger,
    revisions = trigger.revisions, variables = state.decode(e.vars), runs = json.array(runs),
    started = e.started_us / 1e6, ended = e.ended_us and e.ended_us / 1e6,
    duration = e.ended_us and secs(e.started_us, e.ended_us), stages = {} }
  local by_stage = {}
  for _, s in ipairs(state.stages(e.id)) do
    local st = { name = s.stage, status = s.status, attempt = s.attempt, message = s.message,
      duration = secs(s.started_us, s.ended_us), actions = {} }
    if out.status == "Interrupted" and st.status == "InProgress" then
      st.status = "Interrupted"
    end
    by_stage[s.stage] = st
    out.stages[#out.stages + 1] = st
  end
  for _, a in ipairs(state.actions(e.id)) do
    local act = { name = a.action, status = a.status, attempt = a.attempt, message = a.message,
      duration = a.started_us and secs(a.started_us, a.ended_us), run = a.run_id,
      outputs = state.decode(a.outputs), artifacts = state.decode(a.artifacts),
      details = state.decode(a.details) }
    if out.status == "Interrupted" and act.status == "InProgress" then
      act.status = "Interrupted"
    end
    local st = by_stage[a.stage]
    if st then
      st.actions[#st.actions + 1] = act
    end
  end
  for _, st in ipairs(out.stages) do
    st.actions = json.array(st.actions)
  end
  out.stages = json.array(out.stages)
  return out
end

local function dur(s)
  if not s then
    return ""
  end
  if s < 60 then
    return string.format("%.1fs", s)
  end
  return string.format("%dm%02ds", math.floor(s / 60), math.floor(s % 60))
end

--- An execution table (M.execution) as lines of text.
function M.execution_text(x)
  local out = { string.format("pipeline %s  execution %d  %s%s  %s", x.pipeline, x.id, x.status,
    x.kind == "rollback" and (" (rollback of " .. tostring(x.target) .. ")") or "",
    dur(x.duration)) }
  if x.message then
    out[#out + 1] = "  " .. x.message
  end
  local t = x.trigger or {}
  if t.kind and t.kind ~= "manual" then
    out[#out + 1] = string.format("  trigger: %s %s %s", t.kind, t.ref or "", t.revision or "")
  end
  for name, rev in pairs(x.revisions or {}) do
    out[#out + 1] = string.format("  revision %s: %s", name, rev)
  end
  for _, s in ipairs(x.stages) do
    out[#out + 1] = string.format("  %-10s %s  %s%s", s.status, s.name, dur(s.duration),
      s.message and ("  " .. s.message) or "")
    for _, a in ipairs(s.actions) do
      local extra = {}
      if a.attempt and a.attempt > 1 then
        extra[#extra + 1] = "attempt " .. a.attempt
      end
      for name, ref in pairs(a.artifacts or {}) do
        extra[#extra + 1] = string.format("%s=%s", name, ref.sha256 and ref.sha256:sub(1, 12)
          or ref.version or ref.path or "?")
      end
      if a.outputs and a.outputs.CommitId then
        extra[#extra + 1] = "commit " .. a.outputs.CommitId:sub(1, 12)
      end
      for _, rep in ipairs(a.details and a.details.reports or {}) do
        local n, failed = 0, 0
        for _, f in ipairs(rep.files or {}) do
          n = n + (tonumber(f.total) or 0)
          failed = failed + (tonumber(f.FAILED or f.failed) or 0)
        end
        extra[#extra + 1] = string.format("report %s: %d tests, %d failed", rep.name or "?", n,
          failed)
      end
      if a.message then
        extra[#extra + 1] = a.message
      end
      out[#out + 1] = string.format("    %-10s %s  %s%s", a.status, a.name, dur(a.duration),
        #extra > 0 and ("  " .. table.concat(extra, "  ")) or "")
    end
  end
  return table.concat(out, "\n") .. "\n"
end

--- The declaration as a JSON-ready table (tide graph --json).
function M.plan_table(plan)
  local json = require("tide.json")
  local stages = {}
  for _, s in ipairs(plan.stages) do
    local actions = {}
    for _, a in ipairs(s.actions) do
      actions[#actions + 1] = { name = a.name, kind = a.kind, category = a.category,
        user_kind = a.user_kind, run_order = a.run_order, inputs = json.array(a.inputs),
        outputs = json.array(a.outputs), namespace = a.namespace, timeout = a.timeout }
    end
    stages[#stages + 1] = { name = s.name, actions = json.array(actions),
      before_entry = s.before_entry and s.before_entry.result,
      on_success = s.on_success and s.on_success.result,
      on_failure = s.on_failure and s.on_failure.result }
  end
  return { name = plan.name, mode = plan.mode, structure = plan.structure,
    stages = json.array(stages) }
end

return M
