--- SQL over the state store for stdlib modules that keep tables of their own.
--- Every function raises a TideError on failure (ESQL, ECONFLICT for a constraint, EREADONLY,
--- ECORRUPT). Statements run on the loop thread, on the store's connection; keep them small.
local tide = require("tide")
local native = require("tide._db")

local M = {}

local function check(ok, msg, code, ...)
  if ok == nil and msg then
    error(tide.error(code or "ESQL", msg), 0)
  end
  return ok, msg, code, ...
end

--- Runs one statement with parameters (or a parameterless script of several).
--- Returns the number of changed rows and the last inserted rowid.
function M.exec(sql, ...)
  return check(native.exec(sql, ...))
end

--- All rows of a query, as a list of tables keyed by column name (NULL columns are absent).
function M.rows(sql, ...)
  return check(native.rows(sql, ...))
end

--- The first row of a query, or nil.
function M.row(sql, ...)
  local row, msg, code = native.row(sql, ...)
  if row == nil and msg then
    error(tide.error(code or "ESQL", msg), 0)
  end
  return row
end

--- Runs fn(...) in a transaction (BEGIN IMMEDIATE, or a savepoint when one is open) and returns
--- its results. An error in fn rolls back and is re-raised. fn must not block: a blocking call
--- inside raises, so no transaction stays open while other tasks run.
function M.tx(fn, ...)
  return check(native.tx(fn, ...))
end

M.blob = native.blob
M.in_tx = native.in_tx

--- Brings module's tables up to date: steps[i] is the SQL of version i. The version reached is
--- kept in the meta table under "schema.<module>"; steps already applied are skipped, and a
--- newer version than this tide knows is an error. Returns the version.
local migrated = {} -- module -> version this process brought its tables to (one store each)

function M.migrate(module, steps)
  assert(type(module) == "string" and module:match("^[%w_.-]+$"), "module name expected")
  assert(type(steps) == "table", "list of SQL steps expected")
  if migrated[module] == #steps then
    return #steps
  end
  local key = "schema." .. module
  local function current()
    local row = M.row("SELECT value FROM meta WHERE key = ?", key)
    return row and tonumber(row.value) or 0
  end
  if current() == #steps then
    migrated[module] = #steps
    return #steps
  end
  migrated[module] = (M.tx(function()
    local have = current() -- again, under the write lock
    if have > #steps then
      local msg = "the store's %s tables are version %d, newer than this tide (%d)"
      error(tide.error("ECORRUPT", msg:format(module, have, #steps)), 0)
    end
    for v = have + 1, #steps do
      M.exec(steps[v])
    end
    M.exec("INSERT INTO meta (key, value) VALUES (?, ?) "
      .. "ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, tostring(#steps))
    return #steps
  end))
  return migrated[module]
end

return M
