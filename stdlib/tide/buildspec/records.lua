--- tide.buildspec.records: build and batch records in state.db (module "builds").
--- A build row keeps the columns tide builds lists by and the whole result as JSON.
local json = require("tide.json")

local M = {}

local STEPS = {
    [[CREATE TABLE builds (
        id TEXT PRIMARY KEY,          -- PROJECT:UUID, as CODEBUILD_BUILD_ID
        uuid TEXT NOT NULL UNIQUE,
        project TEXT NOT NULL,
        number INTEGER NOT NULL,      -- per project, from 1
        status TEXT NOT NULL,         -- IN_PROGRESS SUCCEEDED FAILED FAULT TIMED_OUT STOPPED
        run_id INTEGER,               -- the tide run that ran it
        batch_id TEXT,
        started REAL NOT NULL,
        ended REAL,
        result TEXT,                  -- the build result as JSON
        UNIQUE (project, number));
      CREATE INDEX builds_started ON builds (started);
      CREATE TABLE build_batches (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        status TEXT NOT NULL,
        started REAL NOT NULL,
        ended REAL,
        result TEXT);]],
}

local function db()
  local d = require("tide.db")
  d.migrate("builds", STEPS)
  return d
end

--- For readers (a read-only store): the module, or nil when no build was ever recorded here.
local function reader()
  local d = require("tide.db")
  local row = d.row("SELECT value FROM meta WHERE key = 'schema.builds'")
  if not row then
    return nil
  end
  return d
end

--- Takes the next number of project and records the build as IN_PROGRESS.
function M.allocate(b)
  local d = db()
  return d.tx(function()
    local row = d.row("SELECT COALESCE(MAX(number), 0) + 1 AS n FROM builds WHERE project = ?",
      b.project)
    b.number = math.tointeger(row.n)
    b.id = b.project .. ":" .. b.uuid
    d.exec("INSERT INTO builds (id, uuid, project, number, status, run_id, batch_id, started) "
      .. "VALUES (?, ?, ?, ?, 'IN_PROGRESS', ?, ?, ?)", b.id, b.uuid, b.project, b.number,
      b.run_id, b.batch_id, b.started)
    return b.number
  end)
end

--- Writes the final state of a build.
function M.finish(result)
  local d = db()
  d.exec("UPDATE builds SET status = ?, ended = ?, result = ? WHERE id = ?", result.status,
    result.ended, json.encode(result), result.id)
end

local function decode(row)
  if not row then
    return nil
  end
  local r = row.result and json.decode(row.result) or {}
  r.id, r.project, r.number, r.status = row.id, row.project, math.tointeger(row.number), row.status
  r.run_id = r.run_id or (row.run_id and math.tointeger(row.run_id))
  r.started, r.ended = row.started, row.ended
  return r
end

--- A build by id, uuid, unique uuid prefix, or PROJECT:NUMBER. Returns the record or nil.
function M.get(key)
  local d = reader()
  if not d then
    return nil
  end
  local row = d.row("SELECT * FROM builds WHERE id = ? OR uuid = ?", key, key)
  if not row then
    local project, n = key:match("^(.*):(%d+)$")
    if project then
      row = d.row("SELECT * FROM builds WHERE project = ? AND number = ?", project, tonumber(n))
    end
  end
  if not row and #key >= 4 and key:match("^[%x-]+$") then
    local rows = d.rows("SELECT * FROM builds WHERE uuid LIKE ? LIMIT 2", key .. "%")
    if #rows == 1 then
      row = rows[1]
    end
  end
  return decode(row)
end

--- The most recent builds, newest first, of one project or all.
function M.list(project, limit)
  local d = reader()
  if not d then
    return {}
  end
  local rows
  if project then
    rows = d.rows("SELECT id, project, number, status, started, ended, run_id FROM builds "
      .. "WHERE project = ? ORDER BY started DESC LIMIT ?", project, limit or 20)
  else
    rows = d.rows("SELECT id, project, number, status, started, ended, run_id FROM builds "
      .. "ORDER BY started DESC LIMIT ?", limit or 20)
  end
  for _, r in ipairs(rows) do
    r.number = math.tointeger(r.number)
    r.run_id = r.run_id and math.tointeger(r.run_id)
  end
  return rows
end

function M.batch_start(batch)
  db().exec("INSERT INTO build_batches (id, project, status, started) VALUES (?, ?, ?, ?)",
    batch.id, batch.project, "IN_PROGRESS", batch.started)
end

function M.batch_finish(batch)
  db().exec("UPDATE build_batches SET status = ?, ended = ?, result = ? WHERE id = ?",
    batch.status, batch.ended, json.encode(batch), batch.id)
end

return M
