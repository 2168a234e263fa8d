--- The durable state of pipeline executions, in the store's own database (tide.db).
--- Every change is committed here before the engine acts on it: a tide that dies at any point
--- leaves a record from which the next tide continues without redoing finished work.
local json = require("tide.json")
local tide = require("tide")

local M = {}

local SCHEMA = {
  [[
  CREATE TABLE pipeline_executions (
    id INTEGER PRIMARY KEY,            -- the id of the run that started it
    pipeline TEXT NOT NULL,
    file TEXT NOT NULL,                -- absolute path of the script, to resume or retry it
    structure TEXT NOT NULL,           -- digest of the declaration
    mode TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'normal',   -- normal | rollback
    target INTEGER,                    -- for a rollback: the execution whose outputs it reuses
    status TEXT NOT NULL,
    owner_run INTEGER NOT NULL,        -- the run driving it now
    request TEXT,                      -- stop | abandon, written by another process
    vars TEXT NOT NULL,                -- pipeline variables (JSON object)
    trigger TEXT,                      -- what started it (JSON object)
    stage TEXT,                        -- the stage it is in or waits for
    waiting INTEGER NOT NULL DEFAULT 0,
    started_us INTEGER NOT NULL,
    ended_us INTEGER,
    message TEXT
  );
  CREATE INDEX pipeline_executions_by_name ON pipeline_executions (pipeline, id);
  CREATE TABLE pipeline_runs (run_id INTEGER PRIMARY KEY, execution INTEGER NOT NULL);
  CREATE TABLE pipeline_stages (
    execution INTEGER NOT NULL, stage TEXT NOT NULL, idx INTEGER NOT NULL,
    status TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 1,
    started_us INTEGER, ended_us INTEGER, message TEXT,
    PRIMARY KEY (execution, stage)
  );
  CREATE TABLE pipeline_actions (
    execution INTEGER NOT NULL, stage TEXT NOT NULL, action TEXT NOT NULL,
    status TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, run_id INTEGER,
    started_us INTEGER, ended_us INTEGER, message TEXT,
    outputs TEXT,                      -- exported variables (JSON object)
    artifacts TEXT,                    -- output artifact name -> reference (JSON object)
    details TEXT,                      -- revision, reports... (JSON object)
    PRIMARY KEY (execution, stage, action)
  );
  CREATE TABLE pipeline_approvals (
    execution INTEGER NOT NULL, stage TEXT NOT NULL, action TEXT NOT NULL,
    token TEXT NOT NULL, status TEXT NOT NULL, summary TEXT,
    expires_us INTEGER NOT NULL, decided_us INTEGER,
    PRIMARY KEY (execution, stage, action)
  );
  CREATE TABLE pipeline_locks (
    pipeline TEXT NOT NULL, stage TEXT NOT NULL, execution INTEGER NOT NULL,
    PRIMARY KEY (pipeline, stage)
  );
  CREATE TABLE pipeline_transitions (
    pipeline TEXT NOT NULL, stage TEXT NOT NULL, reason TEXT,
    PRIMARY KEY (pipeline, stage)
  );
  CREATE TABLE pipeline_triggers (
    id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL, kind TEXT NOT NULL, source TEXT,
    ref TEXT, revision TEXT, fired_us INTEGER NOT NULL, execution INTEGER
  );
  CREATE TABLE pipeline_heads (
    pipeline TEXT NOT NULL, url TEXT NOT NULL, ref TEXT NOT NULL, revision TEXT NOT NULL,
    PRIMARY KEY (pipeline, url, ref)
  );
  ]],
  [[
  -- A rollback decided by a failed stage, recorded with the stage's final state; execution is
  -- the rollback execution once one has claimed it.
  CREATE TABLE pipeline_rollbacks (
    id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL, stage TEXT NOT NULL,
    target INTEGER NOT NULL, from_execution INTEGER NOT NULL, created_us INTEGER NOT NULL,
    execution INTEGER
  );
  CREATE INDEX pipeline_rollbacks_pending ON pipeline_rollbacks (pipeline, execution);
  -- When a running action must end: kept when its tide dies and another resumes it.
  ALTER TABLE pipeline_actions ADD COLUMN deadline_us INTEGER;
  ]],
}

local db

--- Whether the open store has the pipeline tables (a read-only store may not).
function M.has_tables()
  local ok, mod = pcall(require, "tide.db")
  return ok and mod.row("SELECT 1 AS x FROM sqlite_master WHERE name = 'pipeline_executions'")
    ~= nil
end

--- The tide.db module with the pipeline tables in place (the store must be open; a read-only
--- store must already have them, up to date: see has_tables).
function M.db()
  if not db then
    local ok, mod = pcall(require, "tide.db")
    if not ok then
      error(tide.error("EINPUT", "pipelines need the state store (tide.db): " .. tostring(mod)), 0)
    end
    mod.migrate("pipeline", SCHEMA)
    db = mod
  end
  return db
end

function M.now_us()
  return math.floor(tide.now() * 1e6)
end

--- Statuses an execution may still change from.
M.ACTIVE = { InProgress = true, Stopping = true }

--- Whether the run that drives execution e holds its lock now.
function M.owner_alive(e)
  local runtime = require("tide._runtime")
  if runtime.run_id and runtime.run_id() == e.owner_run then
    return true
  end
  return require("tide._store").alive(e.owner_run)
end

--- The status to show: an active execution whose tide is gone is "Interrupted".
function M.shown_status(e)
  if M.ACTIVE[e.status] and not M.owner_alive(e) then
    return "Interrupted"
  end
  return e.status
end

function M.execution(id)
  return M.db().row("SELECT * FROM pipeline_executions WHERE id = ?", id)
end

--- The execution a run started or continued, or nil.
function M.execution_of_run(run_id)
  local r = M.db().row("SELECT execution FROM pipeline_runs WHERE run_id = ?", run_id)
  return r and M.execution(r.execution)
end

function M.stages(id)
  return M.db().rows("SELECT * FROM pipeline_stages WHERE execution = ? ORDER BY idx", id)
end

function M.actions(id)
  return M.db().rows("SELECT * FROM pipeline_actions WHERE execution = ? ORDER BY rowid", id)
end

function M.action(id, stage, action)
  return M.db().row("SELECT * FROM pipeline_actions WHERE execution = ? AND stage = ? "
    .. "AND action = ?", id, stage, action)
end

function M.executions(pipeline, limit)
  if pipeline then
    return M.db().rows("SELECT * FROM pipeline_executions WHERE pipeline = ? ORDER BY id DESC "
      .. "LIMIT ?", pipeline, limit or -1)
  end
  return M.db().rows("SELECT * FROM pipeline_executions ORDER BY id DESC LIMIT ?", limit or -1)
end

--- Records a new execution started by run_id, with one row per stage and action.
function M.create(e, plan)
  local d = M.db()
  d.tx(function()
    d.exec("INSERT INTO pipeline_executions (id, pipeline, file, structure, mode, kind, target, "
      .. "status, owner_run, vars, trigger, started_us) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
      e.id, e.pipeline, e.file, e.structure, e.mode, e.kind or "normal", e.target, "InProgress",
      e.id, json.encode(e.vars), e.trigger and json.encode(e.trigger), M.now_us())
    d.exec("INSERT OR REPLACE INTO pipeline_runs (run_id, execution) VALUES (?, ?)", e.id, e.id)
    for i, stage in ipairs(plan.stages) do
      d.exec("INSERT INTO pipeline_stages (execution, stage, idx, status, attempt) "
        .. "VALUES (?, ?, ?, 'Pending', 0)", e.id, stage.name, i)
      for _, a in ipairs(stage.actions) do
        d.exec("INSERT INTO pipeline_actions (execution, stage, action, status) "
          .. "VALUES (?, ?, ?, 'Pending')", e.id, stage.name, a.name)
      end
    end
  end)
end

--- Makes run_id the driver of execution id, if its previous driver is gone. Returns true when
--- taken; a conditional update, so of two tides racing for it only one wins.
function M.take_over(id, run_id, prev_owner)
  local d = M.db()
  return d.tx(function()
    -- A stop asked for before the tide died still holds: request and status are kept.
    local n = d.exec("UPDATE pipeline_executions SET owner_run = ? WHERE id = ? AND "
      .. "owner_run = ?", run_id, id, prev_owner)
    if n == 1 then
      d.exec("INSERT OR REPLACE INTO pipeline_runs (run_id, execution) VALUES (?, ?)", run_id, id)
    end
    return n == 1
  end)
end

--- UPDATE tbl SET fields WHERE where, with fields in a stable order (one cached statement per
--- set of keys); json.null stores NULL.
local function update(tbl, fields, where, ...)
  local keys = {}
  for k in pairs(fields) do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local sets, args = {}, {}
  for i, k in ipairs(keys) do
    sets[i] = k .. " = ?"
    if fields[k] ~= json.null then
      args[i] = fields[k]
    end
  end
  local n = #keys
  local extra = table.pack(...)
  for i = 1, extra.n do
    args[n + i] = extra[i]
  end
  return M.db().exec("UPDATE " .. tbl .. " SET " .. table.concat(sets, ", ") .. " WHERE " .. where,
    table.unpack(args, 1, n + extra.n))
end

function M.set_execution(id, fields)
  return update("pipeline_executions", fields, "id = ?", id)
end

function M.set_stage(id, stage, fields)
  return update("pipeline_stages", fields, "execution = ? AND stage = ?", id, stage)
end

function M.set_action(id, stage, action, fields)
  return update("pipeline_actions", fields, "execution = ? AND stage = ? AND action = ?", id,
    stage, action)
end

--- A JSON column as a table ({} for NULL).
function M.decode(s)
  if s == nil or s == "" then
    return {}
  end
  return json.decode(s)
end

return M
