--- Runs pipeline executions: stage entry under the execution mode, runOrder groups, actions of
--- every kind, stage conditions, stop, automatic retry. Every state change is committed to the
--- store (tide.pipeline.state) before the engine acts on it, so a tide killed at any point
--- leaves an execution the next tide continues without redoing finished actions.
local tide = require("tide")
local json = require("tide.json")
local fs = require("tide.fs")
local state = require("tide.pipeline.state")
local variables = require("tide.pipeline.variables")

local M = {}

-- How often a waiting execution looks at the store for what other tide processes wrote.
M.POLL = 0.25

local function say(fmt, ...)
  print(string.format(fmt, ...))
end

--- A module the engine needs for one kind of action, or a clear error naming the action.
local function need(name, what)
  local ok, mod = pcall(require, name)
  if not ok then
    error(tide.error("EINPUT", string.format("%s needs %s, which this tide does not have (%s)",
      what, name, tostring(mod):match("^[^\n]*"))), 0)
  end
  return mod
end
M.need = need

local function home()
  return require("tide._store").home()
end

local function mkdirs(path)
  local ok, err = fs.mkdir_p(path)
  if not ok then
    error(tide.error("EINPUT", err), 0)
  end
  return path
end

-- Artifacts -----------------------------------------------------------------------------------

--- Keeps dir as artifact name of execution ex; returns the reference to record.
local function put_artifact(ex, name, dir, attempt)
  local ok, store = pcall(require, "tide.artifact")
  if ok then
    local ref = store.put_dir(dir, { package = ex.plan.name .. "." .. name,
      version = string.format("%d.%d", ex.id, attempt) })
    return { package = ref.package, version = ref.version, sha256 = ref.sha256 }
  end
  -- Without the artifact store: the directory itself, moved under the state home.
  local dest = mkdirs(string.format("%s/pipelines/artifacts/%d", home(), ex.id)) .. "/" .. name
  fs.rm_r(dest)
  local moved, err = os.rename(dir, dest)
  if not moved then
    error(tide.error("EINPUT", "cannot keep artifact '" .. name .. "': " .. tostring(err)), 0)
  end
  return { path = dest }
end

--- A directory holding artifact ref (fetched into dest when it lives in the artifact store).
local function get_artifact(ref, dest)
  if ref.path then
    return ref.path
  end
  local store = need("tide.artifact", "artifact " .. tostring(ref.package))
  mkdirs(dest)
  store.get(ref, dest)
  return dest
end

-- Execution record ----------------------------------------------------------------------------

--- Loads what the finished actions of ex left: namespace variables and artifacts.
local function load_outputs(ex)
  ex.outputs, ex.artifacts = {}, {}
  local by_id = {}
  for _, s in ipairs(ex.plan.stages) do
    for _, a in ipairs(s.actions) do
      by_id[a.id] = a
    end
  end
  for _, row in ipairs(state.actions(ex.id)) do
    local a = by_id[row.stage .. "/" .. row.action]
    if a and row.status == "Succeeded" then
      if a.namespace then
        ex.outputs[a.namespace] = state.decode(row.outputs)
      end
      for name, ref in pairs(state.decode(row.artifacts)) do
        ex.artifacts[name] = ref
      end
    end
  end
end

local function scope(ex)
  return variables.scope(ex.id, ex.plan.name, ex.vars, ex.outputs)
end

-- Stage entry ---------------------------------------------------------------------------------

--- Whether execution id still holds what it took: active, and its tide alive.
local function holder_active(id)
  local e = state.execution(id)
  return e and state.ACTIVE[e.status] and state.owner_alive(e)
end

--- Waits until ex may enter stage, following the execution mode. Returns "enter", "superseded"
--- or "stopped".
local function enter(ex, stage)
  local d = state.db()
  local pipeline, mode = ex.plan.name, ex.plan.mode
  local announced = false
  while true do
    local verdict = d.tx(function()
      local e = state.execution(ex.id)
      if e.status == "Superseded" then
        return "superseded"
      end
      if e.request then
        return "stopped"
      end
      local blocked
      local disabled = d.row("SELECT reason FROM pipeline_transitions WHERE pipeline = ? AND "
        .. "stage = ?", pipeline, stage.name)
      if disabled then
        blocked = "the transition into " .. stage.name .. " is disabled"
          .. (disabled.reason and (": " .. disabled.reason) or "")
      end
      if not blocked and mode ~= "PARALLEL" then
        local lock = d.row("SELECT execution FROM pipeline_locks WHERE pipeline = ? AND stage = ?",
          pipeline, stage.name)
        if lock and lock.execution ~= ex.id and holder_active(lock.execution) then
          blocked = string.format("stage %s is locked by execution %d", stage.name,
            lock.execution)
        end
      end
      if not blocked and mode == "QUEUED" then
        -- Arrival order: an older execution waiting here goes first.
        for _, w in ipairs(d.rows("SELECT id FROM pipeline_executions WHERE pipeline = ? AND "
          .. "stage = ? AND waiting = 1 AND id < ? AND status IN ('InProgress', 'Stopping') "
          .. "ORDER BY id", pipeline, stage.name, ex.id)) do
          if holder_active(w.id) then
            blocked = string.format("execution %d arrived first", w.id)
            break
          end
        end
      end
      if blocked then
        state.set_execution(ex.id, { stage = stage.name, waiting = 1 })
        if mode == "SUPERSEDED" then
          -- A newer waiting execution replaces the older ones waiting at the same stage.
          d.exec("UPDATE pipeline_executions SET status = 'Superseded', ended_us = ?, waiting = 0, "
            .. "message = ? WHERE pipeline = ? AND stage = ? AND waiting = 1 AND id < ? AND "
            .. "status = 'InProgress'", state.now_us(),
            "superseded by execution " .. ex.id, pipeline, stage.name, ex.id)
        end
        return "wait", blocked
      end
      if mode ~= "PARALLEL" then
        d.exec("INSERT OR REPLACE INTO pipeline_locks (pipeline, stage, execution) VALUES (?,?,?)",
          pipeline, stage.name, ex.id)
      end
      state.set_execution(ex.id, { stage = stage.name, waiting = 0 })
      return "enter"
    end)
    if verdict ~= "wait" then
      return verdict
    end
    if not announced then
      say("%s: waiting to enter %s", ex.plan.name, stage.name)
      announced = true
    end
    tide.sleep(M.POLL)
  end
end

local function release(ex, stage)
  state.db().exec("DELETE FROM pipeline_locks WHERE pipeline = ? AND stage = ? AND execution = ?",
    ex.plan.name, stage.name, ex.id)
end

-- Actions -------------------------------------------------------------------------------------

local function work_dir(ex, a, attempt)
  return string.format("%s/pipelines/work/%d/%s/%s/%d", home(), ex.id, a.stage, a.name, attempt)
end

local function message_of(err)
  if type(err) == "table" and err.message then
    return err.message
  end
  return tostring(err)
end

--- Calls a tide.git function; its error is raised again naming the action.
local function git_call(a, fn, ...)
  local ok, res = pcall(fn, ...)
  if not ok then
    local code = type(res) == "table" and res.code or "EGIT"
    error(tide.error(code == "ECANCELED" and code or "EINPUT", string.format("%s: %s", a.place,
      message_of(res))), 0)
  end
  return res
end

--- The source revision of action a, resolved when the execution started (or now).
function M.resolve_source(a, fixed, config)
  local git = need("tide.git", "source action " .. a.id)
  config = config or a.config
  local url, want = config.git, config.revision
  if fixed then
    return fixed
  end
  local heads = git_call(a, git.ls_remote, url, { credentials = config.credentials })
  if want and want:match("^%x+$") and #want == 40 then
    return want
  end
  local candidates
  if want then
    candidates = { "refs/tags/" .. want, "refs/heads/" .. want, want }
  elseif config.branch then
    candidates = { "refs/heads/" .. config.branch }
  else
    candidates = { "HEAD", "refs/heads/main", "refs/heads/master" }
  end
  for _, ref in ipairs(candidates) do
    if heads[ref] then
      return heads[ref]
    end
  end
  error(tide.error("EINPUT", string.format("%s: %s '%s' does not resolve in '%s'", a.place,
    want and "revision" or "branch", want or config.branch or "HEAD", url)), 0)
end

local KIND = {}

function KIND.source(ex, a, ctx)
  local git = need("tide.git", "source action " .. a.id)
  local rev = ex.revisions[a.name] or M.resolve_source(a, nil, ctx.config)
  local dir = ctx.outputs[a.outputs[1]]
  fs.rm_r(dir)
  local repo = git_call(a, git.checkout_to, ctx.config.git, rev, dir,
    { credentials = ctx.config.credentials })
  local info = git_call(a, repo.commit_info, repo, rev)
  fs.rm_r(dir .. "/.git")
  local name = ctx.config.git:gsub("/+$", ""):match("([^/]+)$") or ctx.config.git
  -- A push trigger's branch wins over the configured one (CodePipeline ignores it there).
  local branch = ex.trigger.source == a.name and ex.trigger.ref
    and ex.trigger.ref:match("^refs/heads/(.+)$") or nil
  return {
    CommitId = info.id,
    BranchName = branch or ctx.config.branch or "",
    CommitMessage = (info.message or ""):gsub("%s+$", ""),
    AuthorDate = info.author and info.author.date or "",
    CommitterDate = info.committer and info.committer.date or "",
    RepositoryName = (name:gsub("%.git$", "")),
  }, { revision = info.id, summary = info.summary }
end

function KIND.build(ex, a, ctx)
  local buildspec = need("tide.buildspec", "build action " .. a.id)
  local src = ctx.dir .. "/src"
  fs.rm_r(src)
  local ok, err = fs.copy_tree(ctx.inputs[a.inputs[1]], src)
  if not ok then
    error(tide.error("EINPUT", err), 0)
  end
  local env = {}
  for k, v in pairs(ctx.env or {}) do
    env[k] = v
  end
  for k, v in pairs(ctx.config.env or {}) do
    env[k] = v
  end
  for i = 2, #a.inputs do
    env["CODEBUILD_SRC_DIR_" .. a.inputs[i]] = ctx.inputs[a.inputs[i]]
  end
  local r = buildspec.run({ file = ctx.config.buildspec or "buildspec.yml", src = src, env = env,
    project = ctx.config.project or (ex.plan.name .. "-" .. a.name),
    output = ctx.dir .. "/build-artifacts", sandbox = ctx.config.sandbox,
    on_line = function(line) print(string.format("[%s] %s", a.id, line)) end })
  local reports = {}
  for _, rep in ipairs(r.reports or {}) do
    local summaries = {}
    for _, f in ipairs(rep.files or {}) do
      summaries[#summaries + 1] = f.summary or { error = f.error }
    end
    reports[#reports + 1] = { group = rep.group, name = rep.name, report_id = rep.report_id,
      error = rep.error, files = summaries }
  end
  local details = { build_status = r.status, build = r.uuid or r.id, reports = reports }
  if r.status ~= "SUCCEEDED" then
    local phase
    for _, p in ipairs(r.phases or {}) do
      if p.status and p.status ~= "SUCCEEDED" and not phase then
        phase = p.type or p.name
      end
    end
    error(tide.error("EPROC", string.format("build %s%s", tostring(r.status),
      phase and (" in phase " .. phase) or "")), 0)
  end
  -- Output 1 is the primary artifact; the others are secondary artifacts by identifier.
  for i, name in ipairs(a.outputs) do
    local from
    for _, rec in ipairs(r.artifacts or {}) do
      if (i == 1 and rec.identifier == nil) or rec.identifier == name then
        from = rec.path
      end
    end
    if not from then
      error(tide.error("EINPUT", string.format("%s: the build made no artifact for output '%s'",
        a.place, name)), 0)
    end
    fs.rm_r(ctx.outputs[name])
    local copied, cerr = fs.copy_tree(from, ctx.outputs[name])
    if not copied then
      error(tide.error("EINPUT", cerr), 0)
    end
  end
  return r.exported or r.exported_variables or {}, details
end

function KIND.approval(ex, a, ctx)
  local d = state.db()
  local row = d.row("SELECT * FROM pipeline_approvals WHERE execution = ? AND stage = ? AND "
    .. "action = ?", ex.id, a.stage, a.name)
  if not row then
    local expires = state.now_us() + math.floor(a.timeout * 1e6)
    d.exec("INSERT INTO pipeline_approvals (execution, stage, action, token, status, expires_us) "
      .. "VALUES (?, ?, ?, ?, 'Pending', ?)", ex.id, a.stage, a.name,
      string.format("%d/%s/%s", ex.id, a.stage, a.name), expires)
    say("%s: waiting for approval%s: tide approve %d %s --summary \"...\"%s", a.id,
      ctx.config.summary and (" (" .. ctx.config.summary .. ")") or "", ex.id, a.id,
      ctx.config.link and ("  " .. ctx.config.link) or "")
  end
  while true do
    row = d.row("SELECT * FROM pipeline_approvals WHERE execution = ? AND stage = ? AND "
      .. "action = ?", ex.id, a.stage, a.name)
    if row.status == "Approved" then
      return { summary = row.summary or "" }, { approval = "Approved", summary = row.summary }
    elseif row.status == "Rejected" then
      error(tide.error("EREJECTED", "rejected: " .. (row.summary or "")), 0)
    elseif row.status == "Expired" or state.now_us() >= row.expires_us then
      d.exec("UPDATE pipeline_approvals SET status = 'Expired', decided_us = ? WHERE execution = ? "
        .. "AND stage = ? AND action = ? AND status = 'Pending'", state.now_us(), ex.id, a.stage,
        a.name)
      error(tide.error("ETIMEDOUT", "no answer before the approval timed out"), 0)
    end
    if ex.stop then
      error(tide.error("ECANCELED", "the execution was stopped"), 0)
    end
    tide.sleep(M.POLL)
  end
end

function KIND.run(_, a, ctx)
  local extra = a.fn(ctx)
  if extra ~= nil and type(extra) ~= "table" then
    error(tide.error("EINPUT", string.format("%s: run must return nil or a table of variables, "
      .. "not a %s", a.place, type(extra))), 0)
  end
  for k, v in pairs(extra or {}) do
    ctx.exported[k] = v
  end
  return ctx.exported
end

--- The ctx an action's Lua code sees.
local function make_ctx(ex, a, attempt, resolved)
  local ctx = { execution = ex.id, pipeline = ex.plan.name, stage = a.stage, action = a.name,
    attempt = attempt, inputs = {}, outputs = {}, exported = {}, config = resolved.config,
    env = resolved.env, variables = ex.vars }
  local sc = scope(ex)
  function ctx.var(s)
    return variables.resolve(s, sc, a.id)
  end
  function ctx.log(fmt, ...)
    say("[%s] " .. fmt, a.id, ...)
  end
  function ctx.export(k, v)
    ctx.exported[k] = tostring(v)
  end
  if #a.inputs > 0 or #a.outputs > 0 or a.kind == "build" then
    ctx.dir = work_dir(ex, a, attempt)
    for _, name in ipairs(a.inputs) do
      local ref = ex.artifacts[name]
      if not ref then
        error(tide.error("EINPUT", string.format("%s: input artifact '%s' is missing", a.id,
          name)), 0)
      end
      ctx.inputs[name] = get_artifact(ref, ctx.dir .. "/in/" .. name)
    end
    for _, name in ipairs(a.outputs) do
      ctx.outputs[name] = mkdirs(ctx.dir .. "/out/" .. name)
    end
  end
  return ctx
end

--- The body of an action's task: runs it and commits its success with its outputs.
local function action_body(ex, a, attempt)
  local sc = scope(ex)
  local resolved = { config = variables.resolve_all(a.config, sc, a.id),
    env = variables.resolve_all(a.env, sc, a.id) }
  local ctx = make_ctx(ex, a, attempt, resolved)
  local vars, details = KIND[a.kind](ex, a, ctx)
  local refs = {}
  for _, name in ipairs(a.outputs) do
    refs[name] = put_artifact(ex, name, ctx.outputs[name], attempt)
  end
  -- A stored output is run output: a secret in it is kept masked, also for later actions,
  -- which read the secret from the store themselves.
  local out = {}
  for k, v in pairs(vars or {}) do
    out[tostring(k)] = tide.mask(tostring(v))
  end
  if #json.encode(out) > 122880 then
    error(tide.error("ELIMIT", a.id .. ": output variables exceed 122,880 bytes"), 0)
  end
  state.set_action(ex.id, a.stage, a.name, { status = "Succeeded", ended_us = state.now_us(),
    outputs = json.encode(out), artifacts = json.encode(refs),
    details = details and json.encode(details) or json.null, message = json.null })
  if a.namespace then
    ex.outputs[a.namespace] = out
  end
  for name, ref in pairs(refs) do
    ex.artifacts[name] = ref
  end
  if ctx.dir then
    fs.rm_r(ctx.dir)
  end
  return true
end

--- Runs one runOrder group: starts every action not finished yet, waits for all of them.
--- Returns true when all succeeded.
local function run_group(ex, stage, group)
  local todo = {}
  local rows = {}
  for _, r in ipairs(state.db().rows("SELECT action, status, attempt FROM pipeline_actions WHERE "
    .. "execution = ? AND stage = ?", ex.id, stage.name)) do
    rows[r.action] = r
  end
  local ok = true
  for _, a in ipairs(group) do
    local r = rows[a.name]
    if r.status == "Failed" or r.status == "Abandoned" then
      ok = false -- finished: it does not run again unless retried
    elseif r.status ~= "Succeeded" then
      todo[#todo + 1] = { a = a, attempt = r.attempt + 1 }
    end
  end
  if #todo == 0 then
    return ok
  end
  -- One transaction records every start of the group before any of them runs.
  local run_id = require("tide._runtime").run_id()
  local now = state.now_us()
  state.db().tx(function()
    for _, t in ipairs(todo) do
      state.set_action(ex.id, stage.name, t.a.name, { status = "InProgress", attempt = t.attempt,
        run_id = run_id, started_us = now, ended_us = json.null, message = json.null })
    end
  end)
  for _, t in ipairs(todo) do
    t.started = tide.monotime()
    t.task = tide.spawn(t.a.id, action_body, ex, t.a, t.attempt)
    ex.running[t.task] = true
  end
  for _, t in ipairs(todo) do
    local a = t.a
    local timeout = a.kind ~= "approval" and a.timeout or nil
    local wok, res, msg = pcall(t.task.wait, t.task,
      timeout and math.max(0.001, timeout - (tide.monotime() - t.started)))
    local status, why
    if wok and res == nil and msg == "timeout" then
      t.task:cancel()
      pcall(t.task.wait, t.task)
      status, why = "Failed", string.format("timed out after %gs", timeout)
    elseif not wok then
      if ex.stop == "abandon" or (type(res) == "table" and res.code == "ECANCELED" and ex.stop) then
        status, why = "Abandoned", "abandoned: the execution was stopped"
      else
        status, why = "Failed", message_of(res)
      end
    end
    ex.running[t.task] = nil
    if status and state.action(ex.id, stage.name, a.name).status == "Succeeded" then
      -- It committed its success, then was cancelled while cleaning up: it stays a success.
      status = nil
    end
    if status then
      ok = false
      state.set_action(ex.id, stage.name, a.name, { status = status, ended_us = state.now_us(),
        message = why })
      say("%s %s: %s", a.id, status, why)
    end
  end
  return ok
end

-- Conditions ----------------------------------------------------------------------------------

local function rule_passes(ex, stage, rule)
  if type(rule) == "function" then
    local ctx = { execution = ex.id, pipeline = ex.plan.name, stage = stage.name,
      variables = ex.vars }
    local sc = scope(ex)
    function ctx.var(s)
      return variables.resolve(s, sc, stage.name)
    end
    local ok, msg = rule(ctx)
    return ok and true or false, msg
  end
  local have = variables.resolve(rule.variable, scope(ex), stage.name)
  local want = rule.value
  local op = rule.operator or "EQ"
  local pass
  if op == "EQ" then
    pass = have == want
  elseif op == "NE" then
    pass = have ~= want
  elseif op == "CONTAINS" then
    pass = have:find(want, 1, true) ~= nil
  else
    pass = require("tide.re").match(have, want) ~= nil
  end
  return pass, string.format("%s is '%s' (%s '%s')", rule.variable, have, op, want)
end

--- Whether every rule of condition c passes; the message of the first that does not.
local function condition_met(ex, stage, c)
  for _, rule in ipairs(c.rules or {}) do
    local ok, pass, msg = pcall(rule_passes, ex, stage, rule)
    if not ok then
      return false, message_of(pass)
    end
    if not pass then
      return false, msg or "a rule did not pass"
    end
  end
  return true
end

-- Stages --------------------------------------------------------------------------------------

local function reset_actions(ex, stage, only_failed)
  local d = state.db()
  for _, a in ipairs(stage.actions) do
    local r = state.action(ex.id, stage.name, a.name)
    if not only_failed or r.status ~= "Succeeded" then
      state.set_action(ex.id, stage.name, a.name, { status = "Pending", ended_us = json.null,
        message = json.null })
      d.exec("DELETE FROM pipeline_approvals WHERE execution = ? AND stage = ? AND action = ?",
        ex.id, stage.name, a.name)
      if a.namespace then
        ex.outputs[a.namespace] = nil
      end
    end
  end
end
M.reset_actions = reset_actions

--- Runs a stage it has entered. Returns "Succeeded", "Failed", "Skipped" or "Stopped", and
--- whether a rollback is asked for.
local function run_stage(ex, stage)
  local row = state.db().row("SELECT * FROM pipeline_stages WHERE execution = ? AND stage = ?",
    ex.id, stage.name)
  local function finish(status, msg)
    state.set_stage(ex.id, stage.name, { status = status, ended_us = state.now_us(),
      message = msg or json.null })
    say("%s %s%s", stage.name, status, msg and (": " .. msg) or "")
    return status
  end
  if row.status ~= "InProgress" then
    -- Entering it anew (a resumed stage keeps its attempt and skips the entry condition).
    state.set_stage(ex.id, stage.name, { status = "InProgress", attempt = row.attempt + 1,
      started_us = state.now_us(), ended_us = json.null, message = json.null })
    row.attempt = row.attempt + 1
    if stage.before_entry then
      local met, why = condition_met(ex, stage, stage.before_entry)
      if not met then
        if stage.before_entry.result == "SKIP" then
          return finish("Skipped", "entry condition not met: " .. why)
        end
        return finish("Failed", "entry condition not met: " .. why)
      end
    end
  end
  while true do
    local ok = true
    for _, group in ipairs(stage.groups) do
      if ex.stop then
        break
      end
      ok = run_group(ex, stage, group)
      if not ok then
        break -- the next group starts only after every action of this one succeeded
      end
    end
    if ex.stop then
      return finish("Stopped", ex.stop == "abandon" and "stopped (abandoned)" or "stopped")
    end
    if ok then
      if stage.on_success then
        local met, why = condition_met(ex, stage, stage.on_success)
        if not met then
          return finish("Failed", "success condition not met: " .. why),
            stage.on_success.result == "ROLLBACK"
        end
      end
      return finish("Succeeded")
    end
    local c = stage.on_failure
    if not c or not condition_met(ex, stage, c) or c.result == "FAIL" then
      return finish("Failed", "an action failed")
    end
    if c.result == "RETRY" and row.attempt <= (c.attempts or 1) then
      say("%s failed: retrying (%s)", stage.name, c.retry_mode or "FAILED_ACTIONS")
      state.db().tx(function()
        reset_actions(ex, stage, c.retry_mode ~= "ALL_ACTIONS")
        state.set_stage(ex.id, stage.name, { attempt = row.attempt + 1 })
      end)
      row.attempt = row.attempt + 1
    elseif c.result == "SKIP" then
      return finish("Failed", "an action failed; the execution goes on (on_failure SKIP)"), false,
        true
    elseif c.result == "ROLLBACK" then
      return finish("Failed", "an action failed"), true
    else
      return finish("Failed", "an action failed; automatic retries used up")
    end
  end
end

-- Executions ----------------------------------------------------------------------------------

--- Watches the store for a stop request from another process; abandons running actions. A
--- libuv timer rather than a task: it reads one row and never blocks, and leaves no span.
local function watch_requests(ex)
  local uv = require("tide.uv")
  local timer = uv.new_timer()
  timer:start(math.floor(M.POLL * 1000), math.floor(M.POLL * 1000), function()
    local ok, e = pcall(state.execution, ex.id)
    if ok and e and e.request and ex.stop ~= e.request then
      ex.stop = e.request
      print(string.format("%s: stop requested (%s)", ex.plan.name, e.request))
      if e.request == "abandon" then
        for task in pairs(ex.running) do
          task:cancel()
        end
      end
    end
  end)
  return timer
end

--- Starts a rollback of stage for ex (a new execution reusing the outputs of the last one that
--- succeeded in it), through a child tide so that it is a run of its own.
local function rollback(ex, stage)
  if ex.plan.mode == "PARALLEL" then
    say("%s: no rollback in PARALLEL mode", stage.name)
    return
  end
  local target = state.db().row("SELECT e.id FROM pipeline_executions e JOIN pipeline_stages s "
    .. "ON s.execution = e.id WHERE e.pipeline = ? AND e.kind = 'normal' AND e.structure = ? "
    .. "AND s.stage = ? AND s.status = 'Succeeded' AND e.id <> ? ORDER BY e.id DESC LIMIT 1",
    ex.plan.name, ex.plan.structure, stage.name, ex.id)
  if not target then
    say("%s: no earlier execution succeeded in this stage: no rollback", stage.name)
    return
  end
  say("%s: rolling back to execution %d", stage.name, target.id)
  local proc = require("tide.proc")
  local r = proc.run({ require("tide.uv").exepath(), "--home", home(), "run", ex.plan.file,
    "--rollback", stage.name, "--target", tostring(target.id) })
  say("%s: rollback %s", stage.name, r.code == 0 and "succeeded" or "failed")
end

--- Runs execution row e of plan to its end in the calling task. Returns the final status.
function M.execute(plan, e)
  local trigger = state.decode(e.trigger)
  local ex = { id = e.id, plan = plan, vars = state.decode(e.vars), running = {},
    trigger = trigger, revisions = trigger.revisions or {} }
  load_outputs(ex)
  local watcher = watch_requests(ex)
  local status, message
  local rollback_stage
  local stage_rows = {}
  for _, r in ipairs(state.stages(ex.id)) do
    stage_rows[r.stage] = r
  end
  local failed_through = false
  for _, stage in ipairs(plan.stages) do
    local r = stage_rows[stage.name]
    local done = r and (r.status == "Succeeded" or r.status == "Skipped"
      or (r.status == "Failed" and r.message and r.message:find("on_failure SKIP", 1, true)))
    if r and not done then
      local verdict = enter(ex, stage)
      if verdict == "superseded" then
        status = "Superseded"
        break
      elseif verdict == "stopped" then
        ex.stop = ex.stop or state.execution(ex.id).request
        status = "Stopped"
        break
      end
      local t = tide.spawn(stage.name, run_stage, ex, stage)
      local ok, result, wants_rollback, goes_on = pcall(t.wait, t)
      if not ok then
        release(ex, stage)
        state.set_stage(ex.id, stage.name, { status = "Failed", ended_us = state.now_us(),
          message = message_of(result) })
        status, message = "Failed", stage.name .. ": " .. message_of(result)
        break
      end
      release(ex, stage)
      if result == "Stopped" then
        status = "Stopped"
        break
      elseif result == "Failed" and not goes_on then
        status, message = "Failed", "stage " .. stage.name .. " failed"
        if wants_rollback then
          rollback_stage = stage
        end
        break
      elseif result == "Failed" then
        failed_through = true
      end
    end
  end
  status = status or "Succeeded"
  if failed_through and status == "Succeeded" then
    message = "a stage failed and was skipped (on_failure SKIP)"
  end
  watcher:stop()
  watcher:close()
  if status == "Superseded" then
    message = state.execution(ex.id).message
  end
  state.db().tx(function()
    state.set_execution(ex.id, { status = status, ended_us = state.now_us(), waiting = 0,
      message = message or json.null })
    state.db().exec("DELETE FROM pipeline_locks WHERE execution = ?", ex.id)
    -- What an earlier tide left running and this one did not resume ends with the execution.
    local now = state.now_us()
    state.db().exec("UPDATE pipeline_actions SET status = 'Abandoned', ended_us = ?, message = "
      .. "'the execution ended first' WHERE execution = ? AND status = 'InProgress'", now, ex.id)
    state.db().exec("UPDATE pipeline_stages SET status = 'Stopped', ended_us = ? WHERE "
      .. "execution = ? AND status = 'InProgress'", now, ex.id)
  end)
  if status == "Succeeded" then
    fs.rm_r(string.format("%s/pipelines/work/%d", home(), ex.id))
  end
  say("%s: execution %d %s%s", plan.name, ex.id, status, message and (": " .. message) or "")
  if rollback_stage then
    rollback(ex, rollback_stage)
  end
  return status
end

return M
