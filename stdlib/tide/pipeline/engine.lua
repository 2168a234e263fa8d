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
      if mode == "SUPERSEDED" then
        -- An older execution never enters a stage after a newer one has: it is superseded.
        local newer = d.row("SELECT s.execution FROM pipeline_stages s JOIN pipeline_executions "
          .. "x ON x.id = s.execution WHERE x.pipeline = ? AND s.stage = ? AND s.execution > ? "
          .. "AND s.started_us IS NOT NULL LIMIT 1", pipeline, stage.name, ex.id)
        if newer then
          state.set_execution(ex.id, { status = "Superseded", ended_us = state.now_us(),
            waiting = 0, message = "superseded by execution " .. newer.execution })
          return "superseded"
        end
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
      if mode == "SUPERSEDED" then
        -- Entering supersedes every older execution still waiting for this stage, in the same
        -- transaction: none of them may enter after this one.
        d.exec("UPDATE pipeline_executions SET status = 'Superseded', ended_us = ?, waiting = 0, "
          .. "message = ? WHERE pipeline = ? AND stage = ? AND waiting = 1 AND id < ? AND "
          .. "status = 'InProgress'", state.now_us(),
          "superseded by execution " .. ex.id, pipeline, stage.name, ex.id)
      end
      state.set_execution(ex.id, { stage = stage.name, waiting = 0 })
      -- Marks the entry (run_stage records it again): what the check above reads.
      if (d.row("SELECT status FROM pipeline_stages WHERE execution = ? AND stage = ?", ex.id,
        stage.name) or {}).status ~= "InProgress" then
        state.set_stage(ex.id, stage.name, { started_us = state.now_us() })
      end
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

--- Calls a tide.git function; its error is raised again naming the pipeline file and action.
local function git_call(file, a, fn, ...)
  local ok, res = pcall(fn, ...)
  if not ok then
    local code = type(res) == "table" and res.code or "EGIT"
    error(tide.error(code == "ECANCELED" and code or "EINPUT", string.format("%s: %s: %s", file,
      a.place, message_of(res))), 0)
  end
  return res
end

--- Whether commit id exists in the repository at url: a local repository is opened in place;
--- anything else is read from its mirror under the home (tide.pipeline.triggers.mirror).
local function commit_exists(git, url, id, credentials)
  local path = url:match("^file://(/.*)$")
  if not path and not url:match("^%a[%w+.-]*://") and not url:match("^[^/]+@[^/]+:") then
    path = url
  end
  if path then
    local ok, repo = pcall(git.open, path)
    if ok and repo then
      local found, rev = pcall(repo.resolve, repo, id .. "^{commit}")
      return found and rev == id
    end
  end
  local repo = require("tide.pipeline.triggers").mirror(git, url, credentials)
  local found, rev = pcall(repo.resolve, repo, id .. "^{commit}")
  return found and rev == id
end

--- The source revision of action a of the pipeline in file, resolved when the execution
--- started (or now).
function M.resolve_source(file, a, fixed, config)
  local git = need("tide.git", "source action " .. a.id)
  config = config or a.config
  local url, want = config.git, config.revision
  if fixed then
    return fixed
  end
  local heads = git_call(file, a, git.ls_remote, url, { credentials = config.credentials })
  if want and want:match("^%x+$") and #want == 40 then
    want = want:lower()
    for _, id in pairs(heads) do
      if id == want then
        return want
      end
    end
    -- A commit no ref points at is not advertised: look it up in the repository itself.
    local ok, exists = pcall(commit_exists, git, url, want, config.credentials)
    if not ok then
      error(tide.error("EINPUT", string.format("%s: %s: %s", file, a.place,
        message_of(exists))), 0)
    end
    if not exists then
      error(tide.error("EINPUT", string.format("%s: %s: revision '%s' does not exist in '%s'",
        file, a.place, want, git.redact_url(url))), 0)
    end
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
  error(tide.error("EINPUT", string.format("%s: %s: %s '%s' does not resolve in '%s'", file,
    a.place, want and "revision" or "branch", want or config.branch or "HEAD",
    git.redact_url(url))), 0)
end

local KIND = {}
local commit_success

function KIND.source(ex, a, ctx)
  local git = need("tide.git", "source action " .. a.id)
  local rev = ex.revisions[a.name] or M.resolve_source(ex.plan.file, a, nil, ctx.config)
  local dir = ctx.outputs[a.outputs[1]]
  fs.rm_r(dir)
  local repo = git_call(ex.plan.file, a, git.checkout_to, ctx.config.git, rev, dir,
    { credentials = ctx.config.credentials })
  local info = git_call(ex.plan.file, a, repo.commit_info, repo, rev)
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
  -- The build's copy of its source lives outside the tide home, as the build's own shell
  -- directory does: a sandboxed build cannot reach into the (0700) home. It is scratch: each
  -- attempt copies its input again.
  local src = string.format("%s/tide-pipeline-%d-%s-%s-%d", (os.getenv("TMPDIR") or "/tmp")
    :gsub("/+$", ""), ex.id, a.stage, a.name, ctx.attempt)
  fs.rm_r(src)
  local ok, err = fs.copy_tree(ctx.inputs[a.inputs[1]], src)
  if not ok then
    error(tide.error("EINPUT", err), 0)
  end
  local _ <close> = setmetatable({}, { __close = function() pcall(fs.rm_r, src) end })
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

--- Commits the success of action a (fields of its row) before returning. Successes that come
--- in the same turn of the loop share one transaction: the first task to arrive waits one turn
--- for the others, then commits them all; each task still returns only once its own success is
--- in the store. A task cancelled before the commit withdraws its success (it ends Abandoned,
--- as if cancelled just before recording it).
commit_success = function(ex, a, fields)
  local b = ex.batch
  if b then
    local item = { a = a, fields = fields }
    b.items[#b.items + 1] = item
    while not b.done do
      local ok, err = pcall(tide.sleep, 0)
      if not ok then
        if not b.done then
          item.withdrawn = true
        end
        error(err, 0)
      end
    end
    if b.err then
      error(b.err, 0)
    end
    return
  end
  b = { items = { { a = a, fields = fields } } }
  ex.batch = b
  -- Cancelled or not, the leader commits: the others wait for it.
  local waited, cancel = pcall(tide.sleep, 0)
  ex.batch = nil
  local ok, err = pcall(state.db().tx, function()
    for _, item in ipairs(b.items) do
      if not item.withdrawn then
        state.set_action(ex.id, item.a.stage, item.a.name, item.fields)
      end
    end
  end)
  b.done, b.err = true, not ok and err or nil
  if not ok then
    error(err, 0)
  end
  if not waited then
    error(cancel, 0)
  end
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
  local encoded = json.encode(out)
  if #encoded > 122880 then
    error(tide.error("ELIMIT", a.id .. ": output variables exceed 122,880 bytes"), 0)
  end
  commit_success(ex, a, { status = "Succeeded", ended_us = state.now_us(), outputs = encoded,
    artifacts = next(refs) and json.encode(refs) or "{}",
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
  for _, r in ipairs(state.db().rows("SELECT action, status, attempt, started_us, deadline_us "
    .. "FROM pipeline_actions WHERE execution = ? AND stage = ?", ex.id, stage.name)) do
    rows[r.action] = r
  end
  local ok = true
  local now = state.now_us()
  for _, a in ipairs(group) do
    local r = rows[a.name]
    if r.status == "Failed" or r.status == "Abandoned" then
      ok = false -- finished: it does not run again unless retried
    elseif r.status ~= "Succeeded" then
      local t = { a = a, attempt = r.attempt + 1 }
      if r.status == "InProgress" and r.started_us then
        -- Resumed after its tide died: it keeps its start and its deadline.
        t.started_us, t.deadline_us = r.started_us, r.deadline_us
        if t.deadline_us and t.deadline_us <= now then
          t.expired = true
        end
      else
        t.started_us = now
        t.deadline_us = a.kind ~= "approval" and (now + math.floor(a.timeout * 1e6)) or nil
      end
      if t.expired then
        ok = false
        local why = string.format("timed out after %gs", a.timeout)
        state.set_action(ex.id, stage.name, a.name, { status = "Failed", ended_us = now,
          message = why })
        say("%s Failed: %s", a.id, why)
      else
        todo[#todo + 1] = t
      end
    end
  end
  if #todo == 0 then
    return ok
  end
  -- One transaction records every start of the group before any of them runs.
  local run_id = require("tide._runtime").run_id()
  state.db().tx(function()
    for _, t in ipairs(todo) do
      state.set_action(ex.id, stage.name, t.a.name, { status = "InProgress", attempt = t.attempt,
        run_id = run_id, started_us = t.started_us, deadline_us = t.deadline_us or json.null,
        ended_us = json.null, message = json.null })
    end
  end)
  for _, t in ipairs(todo) do
    t.task = tide.spawn(t.a.id, action_body, ex, t.a, t.attempt)
    ex.running[t.task] = true
  end
  for _, t in ipairs(todo) do
    local a = t.a
    local timeout = t.deadline_us and a.timeout or nil
    local wok, res, msg = pcall(t.task.wait, t.task,
      t.deadline_us and math.max(0.001, (t.deadline_us - state.now_us()) / 1e6))
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

--- The execution a rollback of stage returns to: the last normal execution that succeeded in it
--- under the same structure; nil and the reason when there is none or none is allowed.
local function rollback_target(ex, stage)
  if ex.kind == "rollback" then
    -- A rollback execution's own failure just fails it.
    return nil, "a rollback execution is not rolled back"
  end
  if ex.plan.mode == "PARALLEL" then
    return nil, "no rollback in PARALLEL mode"
  end
  local target = state.db().row("SELECT e.id FROM pipeline_executions e JOIN pipeline_stages s "
    .. "ON s.execution = e.id WHERE e.pipeline = ? AND e.kind = 'normal' AND e.structure = ? "
    .. "AND s.stage = ? AND s.status = 'Succeeded' AND e.id <> ? ORDER BY e.id DESC LIMIT 1",
    ex.plan.name, ex.plan.structure, stage.name, ex.id)
  if not target then
    return nil, "no earlier execution succeeded in this stage: no rollback"
  end
  return target.id
end

--- Runs a stage it has entered. Returns "Succeeded", "Failed", "Skipped" or "Stopped", and
--- whether the execution goes on after a failure (on_failure SKIP).
local function run_stage(ex, stage)
  local row = state.db().row("SELECT * FROM pipeline_stages WHERE execution = ? AND stage = ?",
    ex.id, stage.name)
  --- Records the stage's final state and, with wants_rollback, the rollback decision in the
  --- same transaction: a tide killed right after it leaves a pending rollback to start.
  local function finish(status, msg, wants_rollback)
    local target, why
    state.db().tx(function()
      state.set_stage(ex.id, stage.name, { status = status, ended_us = state.now_us(),
        message = msg or json.null })
      -- The stage is released with its final state (one commit fewer per stage).
      state.db().exec("DELETE FROM pipeline_locks WHERE pipeline = ? AND stage = ? AND "
        .. "execution = ?", ex.plan.name, stage.name, ex.id)
      if wants_rollback then
        target, why = rollback_target(ex, stage)
        if target then
          state.db().exec("INSERT INTO pipeline_rollbacks (pipeline, stage, target, "
            .. "from_execution, created_us) VALUES (?, ?, ?, ?, ?)", ex.plan.name, stage.name,
            target, ex.id, state.now_us())
        end
      end
    end)
    say("%s %s%s", stage.name, status, msg and (": " .. msg) or "")
    if wants_rollback and not target then
      say("%s: %s", stage.name, why)
    end
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
    local ok, complete = true, true
    for _, group in ipairs(stage.groups) do
      if ex.stop then
        complete = false
        break
      end
      ok = run_group(ex, stage, group)
      if not ok then
        break -- the next group starts only after every action of this one succeeded
      end
    end
    -- A stop that came while the last actions finished well leaves a succeeded stage.
    if ex.stop and not (ok and complete) then
      return finish("Stopped", ex.stop == "abandon" and "stopped (abandoned)" or "stopped")
    end
    if ok then
      if stage.on_success then
        local met, why = condition_met(ex, stage, stage.on_success)
        if not met then
          return finish("Failed", "success condition not met: " .. why,
            stage.on_success.result == "ROLLBACK")
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
      return finish("Failed", "an action failed; the execution goes on (on_failure SKIP)"), true
    elseif c.result == "ROLLBACK" then
      return finish("Failed", "an action failed", true)
    else
      return finish("Failed", "an action failed; automatic retries used up")
    end
  end
end

--- The body of a stage's task: its span ends failed when the stage fails, cancelled when it is
--- stopped, so the live view and the span tree show what the store says. The outcome is left in
--- out for the engine.
local function stage_task(ex, stage, out)
  out.result, out.goes_on = run_stage(ex, stage)
  if out.result == "Failed" then
    error(tide.error("EFAILED", "stage " .. stage.name .. " failed"), 0)
  elseif out.result == "Stopped" then
    tide.current():cancel()
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

--- Starts the pending rollback row r as a child tide, so that the rollback is a run of its own;
--- waits for it. The child claims the row when it creates its execution: of two tides starting
--- the same row, one runs it.
local function start_rollback(plan, r)
  say("%s: rolling back to execution %d", r.stage, r.target)
  local proc = require("tide.proc")
  proc.run({ require("tide.uv").exepath(), "--home", home(), "run", plan.file,
    "--rollback", r.stage, "--target", tostring(r.target), "--pending", tostring(r.id) })
  local claimed = state.db().row("SELECT x.id, x.status FROM pipeline_rollbacks b JOIN "
    .. "pipeline_executions x ON x.id = b.execution WHERE b.id = ?", r.id)
  if claimed then
    say("%s: rollback execution %d %s", r.stage, claimed.id, claimed.status)
  else
    -- Refused before it began (the pipeline changed, the target is gone): not tried again.
    state.db().exec("UPDATE pipeline_rollbacks SET execution = 0 WHERE id = ? AND execution IS "
      .. "NULL", r.id)
    say("%s: the rollback did not start", r.stage)
  end
end

--- Starts the rollbacks execution id decided (or, without id, those of plan's pipeline whose
--- deciding execution has ended or whose tide died before starting them).
function M.start_pending(plan, id)
  local d = state.db()
  local rows
  if id then
    rows = d.rows("SELECT * FROM pipeline_rollbacks WHERE from_execution = ? AND execution IS "
      .. "NULL ORDER BY id", id)
  else
    rows = {}
    for _, r in ipairs(d.rows("SELECT * FROM pipeline_rollbacks WHERE pipeline = ? AND "
      .. "execution IS NULL ORDER BY id", plan.name)) do
      local e = state.execution(r.from_execution)
      if not e or not (state.ACTIVE[e.status] and state.owner_alive(e)) then
        rows[#rows + 1] = r
      end
    end
  end
  for _, r in ipairs(rows) do
    start_rollback(plan, r)
  end
end

--- Runs execution row e of plan to its end in the calling task. Returns the final status.
function M.execute(plan, e)
  local trigger = state.decode(e.trigger)
  local ex = { id = e.id, plan = plan, vars = state.decode(e.vars), running = {},
    trigger = trigger, revisions = trigger.revisions or {}, kind = e.kind }
  load_outputs(ex)
  local watcher = watch_requests(ex)
  local status, message
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
      local out = {}
      local t = tide.spawn(stage.name, stage_task, ex, stage, out)
      local _, err = pcall(t.wait, t)
      -- A stage that failed or stopped raised on purpose (for its span): its outcome is in out.
      local result, goes_on = out.result, out.goes_on
      if not result then
        release(ex, stage)
        state.set_stage(ex.id, stage.name, { status = "Failed", ended_us = state.now_us(),
          message = message_of(err) })
        status, message = "Failed", stage.name .. ": " .. message_of(err)
        break
      end
      if result == "Stopped" then
        status = "Stopped"
        break
      elseif result == "Failed" and not goes_on then
        status, message = "Failed", "stage " .. stage.name .. " failed"
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
  M.start_pending(plan, ex.id)
  return status
end

return M
