--- Pipelines: a Lua table of stages and actions, run like CodePipeline runs its pipelines.
--- declare/validate (tide.pipeline.declare), run (tide.pipeline.engine), graph and show
--- (tide.pipeline.views), and the controls other processes use: approve, stop, retry,
--- transitions. docs/pipelines.md is the user's guide; docs/lua-api/pipeline.md the reference.
local tide = require("tide")
local json = require("tide.json")
local declare = require("tide.pipeline.declare")
local state = require("tide.pipeline.state")

local M = {}

M.validate = declare.validate
M.load = declare.load

local function input(fmt, ...)
  error(tide.error("EINPUT", string.format(fmt, ...)), 0)
end

local function conflict(fmt, ...)
  error(tide.error("ECONFLICT", string.format(fmt, ...)), 0)
end

--- A pipeline declaration is a table with stages (what a script returns to be run as one).
function M.is_pipeline(v)
  return type(v) == "table" and v.stages ~= nil and v.name ~= nil
end

--- The pipeline variables of an execution: declared defaults overridden by given ones.
function M.variables(plan, given)
  local vars = {}
  for k, v in pairs(plan.variables) do
    vars[k] = v.default
  end
  for k, v in pairs(given or {}) do
    if not plan.variables[k] then
      input("%s: unknown variable '%s' (not in the pipeline's variables)", plan.file, k)
    end
    if v == "" or #v > 1000 then
      input("%s: variable '%s' must be 1 to 1000 characters", plan.file, k)
    end
    vars[k] = v
  end
  for k in pairs(plan.variables) do
    if vars[k] == nil then
      input("%s: variable '%s' has no default and no value (--var %s=...)", plan.file, k, k)
    end
  end
  return vars
end

--- Resolves the revision of every source action now, so that a repository that does not exist
--- or a revision that does not resolve fails before anything runs.
function M.resolve_sources(plan, fixed, vars)
  local engine = require("tide.pipeline.engine")
  local variables = require("tide.pipeline.variables")
  local scope = variables.scope("", plan.name, vars or {})
  local revs = {}
  for _, a in ipairs(plan.stages[1].actions) do
    if a.kind == "source" then
      local config = variables.resolve_all(a.config, scope, a.place)
      revs[a.name] = engine.resolve_source(plan.file, a, fixed and fixed[a.name], config)
    end
  end
  return revs
end

local function abs(file)
  if file:sub(1, 1) == "/" then
    return file
  end
  return (require("tide.uv").cwd() .. "/" .. file):gsub("/%./", "/")
end

--- Runs plan in this tide (the run that began in tide.cli.script), resuming the newest
--- interrupted execution of the same pipeline when there is one. opts: vars, trigger (a
--- pipeline_triggers id), dry_run, new, rollback = stage, target = execution id.
--- Returns the final status.
function M.run(plan, opts)
  opts = opts or {}
  local engine = require("tide.pipeline.engine")
  local run_id = require("tide._runtime").run_id()
  local vars = M.variables(plan, opts.vars)
  if opts.dry_run then
    local views = require("tide.pipeline.views")
    io.stdout:write(views.graph_text(plan))
    local names = {}
    for k in pairs(vars) do
      names[#names + 1] = k
    end
    table.sort(names)
    for _, k in ipairs(names) do
      io.stdout:write(string.format("variable %s = %s\n", k, vars[k]))
    end
    for name, rev in pairs(M.resolve_sources(plan, nil, vars)) do
      io.stdout:write(string.format("source %s at %s\n", name, rev))
    end
    io.stdout:write("dry run: nothing ran\n")
    return "DryRun"
  end
  state.db()
  if not opts.rollback then
    -- Rollbacks decided by executions whose tide died before starting them.
    engine.start_pending(plan)
  end
  if not opts.new and not opts.rollback and not opts.trigger then
    for _, e in ipairs(state.executions(plan.name, 20)) do
      if state.shown_status(e) == "Interrupted" then
        if e.structure ~= plan.structure then
          input("%s: execution %d was interrupted, and the pipeline has changed since; "
            .. "start a new one with --new", plan.file, e.id)
        end
        -- A resumed execution keeps the variables it started with.
        local had = state.decode(e.vars)
        for k, v in pairs(opts.vars or {}) do
          if had[k] ~= v then
            input("%s: --var %s cannot change interrupted execution %d, which runs with %s=%s; "
              .. "start a new one with --new", plan.file, k, e.id, k, tostring(had[k]))
          end
        end
        if state.take_over(e.id, run_id, e.owner_run) then
          print(string.format("%s: resuming interrupted execution %d", plan.name, e.id))
          return engine.execute(plan, state.execution(e.id))
        end
      end
    end
  end
  local trigger = { kind = "manual" }
  if opts.trigger then
    local t = state.db().row("SELECT * FROM pipeline_triggers WHERE id = ?", opts.trigger)
      or input("no trigger %s", tostring(opts.trigger))
    trigger = { kind = t.kind, id = t.id, source = t.source, ref = t.ref, revision = t.revision }
  end
  local fixed = {}
  if trigger.source and trigger.revision then
    fixed[trigger.source] = trigger.revision
  end
  local e = { id = run_id, pipeline = plan.name, file = abs(plan.file), structure = plan.structure,
    mode = plan.mode, vars = vars, trigger = trigger }
  if opts.rollback then
    return M.start_rollback(plan, e, opts.rollback, opts.target, opts.pending)
  end
  trigger.revisions = M.resolve_sources(plan, fixed, vars)
  state.create(e, plan)
  if opts.trigger then
    state.db().exec("UPDATE pipeline_triggers SET execution = ? WHERE id = ?", run_id,
      opts.trigger)
  end
  return engine.execute(plan, state.execution(run_id))
end

--- A rollback execution: the stages before `stage` are those of execution target (reused
--- revisions, artifacts and variables), then `stage` runs again. pending: the
--- pipeline_rollbacks row it carries out, claimed in the transaction that creates it.
function M.start_rollback(plan, e, stage_name, target_id, pending)
  local d = state.db()
  if plan.mode == "PARALLEL" then
    input("%s: pipeline '%s' runs in PARALLEL mode, where stages cannot be rolled back",
      plan.file, plan.name)
  end
  local target = state.execution(tonumber(target_id) or -1)
    or input("no execution %s to roll back to", tostring(target_id))
  if target.kind == "rollback" then
    input("execution %d is a rollback execution: it cannot be a rollback target", target.id)
  end
  local si
  for i, s in ipairs(plan.stages) do
    if s.name == stage_name then
      si = i
    end
  end
  if not si then
    input("%s: no stage '%s'", plan.file, stage_name)
  end
  if plan.stages[si].actions[1].kind == "source" then
    input("%s: a source stage cannot be rolled back", plan.file)
  end
  local ts = d.row("SELECT status FROM pipeline_stages WHERE execution = ? AND stage = ?",
    target.id, stage_name)
  if not ts or ts.status ~= "Succeeded" or target.structure ~= plan.structure then
    input("execution %d did not succeed in %s under the current pipeline", target.id, stage_name)
  end
  e.kind, e.target = "rollback", target.id
  e.vars = state.decode(target.vars)
  e.trigger = state.decode(target.trigger)
  e.trigger.rollback_of = stage_name
  local reduced = { stages = {} }
  for i = 1, si do
    reduced.stages[i] = plan.stages[i]
  end
  local claimed = d.tx(function()
    if pending then
      local n = d.exec("UPDATE pipeline_rollbacks SET execution = ? WHERE id = ? AND execution "
        .. "IS NULL", e.id, pending)
      if n ~= 1 then
        return false
      end
    end
    state.create(e, reduced)
    for i = 1, si - 1 do
      local s = plan.stages[i]
      state.set_stage(e.id, s.name, { status = "Succeeded", message = "from execution "
        .. target.id })
      for _, a in ipairs(s.actions) do
        local r = state.action(target.id, s.name, a.name)
        state.set_action(e.id, s.name, a.name, { status = r.status, outputs = r.outputs or
          json.null, artifacts = r.artifacts or json.null, details = r.details or json.null,
          message = "from execution " .. target.id })
      end
    end
    return true
  end)
  if not claimed then
    conflict("rollback %s was started already", tostring(pending))
  end
  return require("tide.pipeline.engine").execute(plan, state.execution(e.id))
end

-- Controls from other processes -------------------------------------------------------------

local function find_execution(id)
  local e = state.execution(id) or state.execution_of_run(id)
  if not e then
    input("no pipeline execution %s", tostring(id))
  end
  return e
end
M.find_execution = find_execution

--- Answers the approval action "Stage/Action" of execution id. status is "Approved" or
--- "Rejected", exactly.
function M.approve(id, path, status, summary)
  if status ~= "Approved" and status ~= "Rejected" then
    input("approval status must be 'Approved' or 'Rejected', not '%s'", tostring(status))
  end
  local stage, action = tostring(path):match("^([^/]+)/([^/]+)$")
  if not stage then
    input("approval target '%s' must be Stage/Action", tostring(path))
  end
  local d = state.db()
  return d.tx(function()
    local e = find_execution(id)
    if not state.action(e.id, stage, action) then
      input("execution %d of %s has no action %s", e.id, e.pipeline, path)
    end
    local a = d.row("SELECT * FROM pipeline_approvals WHERE execution = ? AND stage = ? AND "
      .. "action = ?", e.id, stage, action)
    if not a or a.status ~= "Pending" or not state.ACTIVE[e.status] then
      input("execution %d is not waiting for approval at %s", e.id, path)
    end
    if state.now_us() >= a.expires_us then
      input("the approval %s of execution %d has expired", path, e.id)
    end
    d.exec("UPDATE pipeline_approvals SET status = ?, summary = ?, decided_us = ? WHERE "
      .. "execution = ? AND stage = ? AND action = ?", status, summary or "", state.now_us(),
      e.id, stage, action)
    return e.id
  end)
end

--- Asks execution id to stop: "stop" lets running actions finish, "abandon" abandons them. An
--- execution whose tide is gone is marked Stopped at once.
function M.stop(id, how)
  local d = state.db()
  return d.tx(function()
    local e = find_execution(id)
    if not state.ACTIVE[e.status] then
      conflict("execution %d is %s, not running", e.id, e.status)
    end
    if state.owner_alive(e) then
      state.set_execution(e.id, { request = how, status = "Stopping" })
      return "Stopping"
    end
    local now = state.now_us()
    d.exec("UPDATE pipeline_actions SET status = 'Abandoned', ended_us = ? WHERE execution = ? "
      .. "AND status = 'InProgress'", now, e.id)
    d.exec("UPDATE pipeline_stages SET status = 'Stopped', ended_us = ? WHERE execution = ? AND "
      .. "status = 'InProgress'", now, e.id)
    d.exec("DELETE FROM pipeline_locks WHERE execution = ?", e.id)
    state.set_execution(e.id, { request = how, status = "Stopped", ended_us = now,
      message = "stopped while its tide was gone" })
    return "Stopped"
  end)
end

--- Prepares execution id for a retry in this run: stage (default the first one not finished)
--- and its actions are reset: those that did not succeed, or all of them with mode
--- "ALL_ACTIONS"; later stages entirely.
--- Returns the execution row, taken over by this run.
function M.prepare_retry(plan, id, stage_name, mode)
  local d = state.db()
  local run_id = require("tide._runtime").run_id()
  return d.tx(function()
    local e = find_execution(id)
    local shown = state.shown_status(e)
    if shown ~= "Failed" and shown ~= "Stopped" and shown ~= "Interrupted" then
      conflict("execution %d is %s: only a failed, stopped or interrupted execution can be "
        .. "retried", e.id, shown)
    end
    if e.pipeline ~= plan.name then
      input("execution %d belongs to pipeline '%s', not '%s'", e.id, e.pipeline, plan.name)
    end
    if e.structure ~= plan.structure then
      conflict("the pipeline '%s' has changed since execution %d ran: it cannot be retried",
        plan.name, e.id)
    end
    local rows = state.stages(e.id)
    local target
    for _, r in ipairs(rows) do
      if stage_name then
        if r.stage == stage_name then
          target = r
        end
      elseif not target and r.status ~= "Succeeded" and r.status ~= "Skipped" then
        target = r
      end
    end
    if not target then
      if stage_name then
        input("execution %d has no stage '%s'", e.id, stage_name)
      end
      conflict("execution %d has no stage to retry", e.id)
    end
    if target.status == "Skipped" then
      conflict("stage %s of execution %d was skipped: a skipped stage cannot be retried",
        target.stage, e.id)
    end
    -- An execution stopped between stages goes on with the next one; a stage named by hand
    -- must have been entered.
    if target.status == "Pending" and stage_name then
      conflict("execution %d never entered stage %s: it cannot be retried there", e.id,
        target.stage)
    end
    if e.mode ~= "PARALLEL" then
      local newer = d.row("SELECT execution FROM pipeline_stages WHERE stage = ? AND "
        .. "execution > ? AND status <> 'Pending' AND execution IN (SELECT id FROM "
        .. "pipeline_executions WHERE pipeline = ?) LIMIT 1", target.stage, e.id, e.pipeline)
      if newer then
        conflict("a newer execution (%d) has entered stage %s: execution %d cannot be retried",
          newer.execution, target.stage, e.id)
      end
    end
    local engine = require("tide.pipeline.engine")
    local ex = { id = e.id, outputs = {} }
    for _, s in ipairs(plan.stages) do
      local r
      for _, x in ipairs(rows) do
        if x.stage == s.name then
          r = x
        end
      end
      if r and r.idx >= target.idx then
        engine.reset_actions(ex, s, mode ~= "ALL_ACTIONS" and r.idx == target.idx)
        state.set_stage(e.id, s.name, { status = "Pending", ended_us = state.now_us(),
          message = json.null })
      end
    end
    -- Ownership moves to this run; the stage keeps its attempt count.
    state.set_execution(e.id, { owner_run = run_id, status = "InProgress", request = json.null,
      ended_us = json.null, message = json.null, waiting = 0 })
    d.exec("INSERT OR REPLACE INTO pipeline_runs (run_id, execution) VALUES (?, ?)", run_id, e.id)
    return state.execution(e.id)
  end)
end

--- Retries execution id in this run (see prepare_retry) and runs it to its end.
function M.retry(plan, id, stage_name, mode)
  local e = M.prepare_retry(plan, id, stage_name, mode)
  print(string.format("%s: retrying execution %d", plan.name, e.id))
  return require("tide.pipeline.engine").execute(plan, e)
end

--- Disables the transition into stage of pipeline (executions wait in front of it) or, with
--- enabled, enables it again. The stage is checked against plan when given (a declaration),
--- else against the newest execution of the pipeline; a pipeline with neither is refused.
function M.transition(pipeline, stage, enabled, reason, plan)
  local d = state.db()
  local names = {}
  if plan then
    for _, s in ipairs(plan.stages) do
      names[#names + 1] = s.name
    end
  else
    local last = d.row("SELECT id FROM pipeline_executions WHERE pipeline = ? AND kind = "
      .. "'normal' ORDER BY id DESC LIMIT 1", pipeline)
    if not last then
      input("no pipeline '%s' has run with this home: give its file (tide transition FILE.lua "
        .. "STAGE) or run it once first", tostring(pipeline))
    end
    for _, r in ipairs(state.stages(last.id)) do
      names[#names + 1] = r.stage
    end
  end
  local known = false
  for _, n in ipairs(names) do
    known = known or n == stage
  end
  if not known then
    input("pipeline '%s' has no stage '%s' (its stages: %s)", pipeline, tostring(stage),
      table.concat(names, ", "))
  end
  if enabled then
    d.exec("DELETE FROM pipeline_transitions WHERE pipeline = ? AND stage = ?", pipeline, stage)
  else
    d.exec("INSERT OR REPLACE INTO pipeline_transitions (pipeline, stage, reason) VALUES (?,?,?)",
      pipeline, stage, reason)
  end
end

function M.graph(plan, format)
  local views = require("tide.pipeline.views")
  if format == "dot" then
    return views.graph_dot(plan)
  end
  return views.graph_text(plan)
end

return M
