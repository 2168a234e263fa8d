--- tide.secrets: a Secrets Manager in state.db. Secrets hold versions of a SecretString or a
--- SecretBinary (at most 64 KiB), labelled with staging labels (AWSCURRENT, AWSPREVIOUS,
--- AWSPENDING and custom ones) that move as in AWS; rotation runs a Lua handler through the four
--- steps; deletion waits out a recovery window unless forced. Values come back as secret
--- userdata (tostring gives "***"; :reveal() gives the string) and are masked in run output.
local tide = require("tide")
local db = require("tide.db")
local json = require("tide.json")
local native = require("tide._secret")
local vault = require("tide.vault")

local M = {}

local fail = vault.fail
local MAX_VALUE = 65536
local MAX_VERSIONS = 100
local DAY_US = 86400 * 1000000
local STEPS = { "createSecret", "setSecret", "testSecret", "finishSecret" }

local function check_name(name)
  if type(name) ~= "string" or name == "" or #name > 512 then
    fail("EINPUT", "invalid secret name %s: 1 to 512 characters expected", tostring(name))
  end
  if name:find("[^%w/_+=.@%-]") then
    fail("EINPUT", "invalid secret name '%s': only letters, digits and /_+=.@- are allowed", name)
  end
  return name
end

local function check_stage(stage)
  if type(stage) ~= "string" or stage == "" or #stage > 256 or stage:find("[^%w_.%-]") then
    fail("EINPUT", "invalid staging label %s", tostring(stage))
  end
  return stage
end

--- A version id in the UUID form AWS uses.
function M.new_version_id()
  local b = { native.random(16):byte(1, 16) }
  b[7] = (b[7] & 0x0f) | 0x40
  b[9] = (b[9] & 0x3f) | 0x80
  local h = string.format(string.rep("%02x", 16), table.unpack(b))
  return ("%s-%s-%s-%s-%s"):format(h:sub(1, 8), h:sub(9, 12), h:sub(13, 16), h:sub(17, 20),
    h:sub(21))
end

local function warn_unmaskable(name, value)
  if #value < native.MASK_MIN_LEN then
    io.stderr:write(("tide: secret '%s' is shorter than %d bytes: it cannot be masked in output\n")
      :format(name, native.MASK_MIN_LEN))
  end
end

-- Deletes the secrets whose recovery window has passed.
local function purge_expired()
  local now = vault.now_us()
  for _, r in ipairs(db.rows("SELECT name FROM secrets WHERE purge_us IS NOT NULL AND "
    .. "purge_us <= ?", now)) do
    db.tx(function()
      db.exec("DELETE FROM secret_versions WHERE name = ?", r.name)
      db.exec("DELETE FROM secret_stages WHERE name = ?", r.name)
      db.exec("DELETE FROM secrets WHERE name = ?", r.name)
    end)
    vault.audit("purge", "secret", r.name, nil, "ok")
  end
end

local function stages_of(name)
  local by_stage, by_seq = {}, {}
  for _, s in ipairs(db.rows("SELECT stage, seq FROM secret_stages WHERE name = ? ORDER BY stage",
    name)) do
    by_stage[s.stage] = s.seq
    by_seq[s.seq] = by_seq[s.seq] or {}
    table.insert(by_seq[s.seq], s.stage)
  end
  return by_stage, by_seq
end

local function set_head(name)
  db.exec("UPDATE secrets SET head_mac = ?, updated_us = ? WHERE name = ?",
    db.blob(vault.head_mac("secret", name, vault.secret_head(name))), vault.now_us(), name)
end

-- The secret's row; raises ENOENT, or EINPUT while it waits for deletion unless deleted_ok.
local function row_of(name, deleted_ok)
  vault.unlock()
  purge_expired()
  check_name(name)
  -- The row and the stages are read by separate statements: a write by another tide in between
  -- looks like a mismatch, so read again before calling it tampering.
  for attempt = 1, 3 do
    local row = db.row("SELECT * FROM secrets WHERE name = ?", name)
    if not row then
      fail("ENOENT", "secret '%s' not found", name)
    end
    if row.purge_us and not deleted_ok then
      fail("EINPUT", "secret '%s' is scheduled for deletion: restore it first", name)
    end
    local ok, err = pcall(vault.check_head, "secret", name, vault.secret_head(name), row.head_mac)
    if ok then
      return row
    elseif attempt == 3 then
      error(err, 0)
    end
  end
end

local function version_by_id(name, version_id)
  local v = db.row("SELECT * FROM secret_versions WHERE name = ? AND version_id = ?", name,
    version_id)
  if not v then
    fail("EINPUT", "secret '%s' has no version '%s'", name, version_id)
  end
  return v
end

-- Puts stage on seq (moving it from wherever it was). AWSCURRENT leaves AWSPREVIOUS behind.
local function move_stage(name, stage, seq)
  local by_stage = stages_of(name)
  if stage == "AWSCURRENT" and by_stage.AWSCURRENT and by_stage.AWSCURRENT ~= seq then
    db.exec("INSERT INTO secret_stages (name, stage, seq) VALUES (?, 'AWSPREVIOUS', ?) "
      .. "ON CONFLICT (name, stage) DO UPDATE SET seq = excluded.seq", name, by_stage.AWSCURRENT)
  end
  db.exec("INSERT INTO secret_stages (name, stage, seq) VALUES (?, ?, ?) "
    .. "ON CONFLICT (name, stage) DO UPDATE SET seq = excluded.seq", name, stage, seq)
end

-- Unlabelled versions past MAX_VERSIONS go, oldest first, but never one younger than a day.
local function drop_deprecated(name)
  local count = db.row("SELECT count(*) AS n FROM secret_versions WHERE name = ?", name).n
  if count <= MAX_VERSIONS then
    return
  end
  local old = db.rows("SELECT seq FROM secret_versions v WHERE name = ? AND created_us < ? AND "
    .. "NOT EXISTS (SELECT 1 FROM secret_stages s WHERE s.name = v.name AND s.seq = v.seq) "
    .. "ORDER BY seq LIMIT ?", name, vault.now_us() - DAY_US, count - MAX_VERSIONS)
  for _, r in ipairs(old) do
    db.exec("DELETE FROM secret_versions WHERE name = ? AND seq = ?", name, r.seq)
  end
end

local function value_arg(name, value)
  local t = type(value)
  if t == "string" then
    return native.new(value), true
  elseif t == "userdata" and tostring(value) == "***" and value.reveal then
    return value, false
  end
  fail("EINPUT", "secret '%s': the value must be a string or a secret, not a %s", name, t)
end

--- Stores a new version of name (creating the secret when needed): PutSecretValue.
--- opts: binary (a SecretBinary), stages (default {"AWSCURRENT"}), version_id (the client
--- request token: repeating it with the same value is a no-op, with another value an error),
--- description. Returns {name, version_id, stages}.
function M.put_value(name, value, opts)
  opts = opts or {}
  check_name(name)
  vault.unlock()
  purge_expired()
  local v, owned = value_arg(name, value)
  if #v > MAX_VALUE then
    fail("EINPUT", "secret '%s': the value is %d bytes, more than %d", name, #v, MAX_VALUE)
  end
  if #v == 0 then
    fail("EINPUT", "secret '%s': the value is empty", name)
  end
  local stages = opts.stages or { "AWSCURRENT" }
  for _, s in ipairs(stages) do
    check_stage(s)
  end
  local version_id = opts.version_id or M.new_version_id()
  if type(version_id) ~= "string" or #version_id < 32 or #version_id > 64
    or version_id:find("[^%w%-]") then
    fail("EINPUT", "secret '%s': a version id is 32 to 64 letters, digits or '-'", name)
  end
  local mac = vault.value_mac(v)
  local existing = db.row("SELECT * FROM secrets WHERE name = ?", name)
  if existing then
    row_of(name)
  end
  local same = existing and db.row("SELECT value_mac FROM secret_versions WHERE name = ? AND "
    .. "version_id = ?", name, version_id)
  if same then
    if owned then
      v:close()
    end
    if not native.equal(same.value_mac, mac) then
      fail("ECONFLICT", "secret '%s': version '%s' exists with another value", name, version_id)
    end
    return { name = name, version_id = version_id, stages = stages }
  end
  local now = vault.now_us()
  db.tx(function()
    -- Read again under the write lock: another tide may have added a version meanwhile.
    existing = db.row("SELECT next_seq FROM secrets WHERE name = ?", name)
    local seq
    if existing then
      seq = existing.next_seq
      if opts.description then
        db.exec("UPDATE secrets SET description = ? WHERE name = ?", opts.description, name)
      end
    else
      seq = 1
      db.exec("INSERT INTO secrets (name, description, created_us, updated_us, next_seq, "
        .. "head_mac) VALUES (?, ?, ?, ?, 1, x'')", name, opts.description, now, now)
    end
    local key_id, ct = vault.seal("secret", name, seq, v)
    db.exec("INSERT INTO secret_versions (name, seq, version_id, binary, key_id, ct, value_mac, "
      .. "created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", name, seq, version_id,
      opts.binary and 1 or 0, key_id, ct, db.blob(mac), now)
    db.exec("UPDATE secrets SET next_seq = ? WHERE name = ?", seq + 1, name)
    for _, s in ipairs(stages) do
      move_stage(name, s, seq)
      if s == "AWSCURRENT" then
        -- A new current value counts as a rotation for the schedule.
        db.exec("UPDATE secrets SET rotated_us = ? WHERE name = ?", now, name)
      end
    end
    drop_deprecated(name)
    set_head(name)
    vault.audit("write", "secret", name, version_id, "ok", mac)
  end)
  warn_unmaskable(name, v)
  native.mask(v)
  if owned then
    v:close()
  end
  return { name = name, version_id = version_id, stages = stages }
end

--- CreateSecret: like put_value, but the secret must not exist yet.
function M.create(name, value, opts)
  vault.unlock()
  if db.row("SELECT 1 AS x FROM secrets WHERE name = ?", check_name(name)) then
    fail("ECONFLICT", "secret '%s' already exists", name)
  end
  return M.put_value(name, value, opts)
end

local function resolve_version(name, opts)
  local by_stage = stages_of(name)
  if opts.version_id then
    local v = version_by_id(name, opts.version_id)
    if opts.stage and by_stage[opts.stage] ~= v.seq then
      fail("EINPUT", "secret '%s': version '%s' does not carry the stage %s", name,
        opts.version_id, opts.stage)
    end
    return v
  end
  local stage = opts.stage or "AWSCURRENT"
  local seq = by_stage[stage]
  if not seq then
    fail("EINPUT", "secret '%s' has no version with the stage %s", name, stage)
  end
  return db.row("SELECT * FROM secret_versions WHERE name = ? AND seq = ?", name, seq)
end

local function json_value(name, value, key)
  local ok, doc = pcall(json.decode, value:reveal())
  if not ok or type(doc) ~= "table" then
    fail("EINPUT", "secret '%s': the value is not a JSON object, so it has no key '%s'", name, key)
  end
  local x = doc[key]
  if x == nil then
    fail("EINPUT", "secret '%s': the JSON value has no key '%s'", name, key)
  end
  local s = type(x) == "table" and json.encode(x) or tostring(x)
  local out = native.new(s)
  if #s >= native.MASK_MIN_LEN then
    native.mask(out)
  end
  return out
end

--- GetSecretValue. opts: stage, version_id (both: they must name the same version), json_key
--- (the value of that key in a JSON SecretString). Returns {name, version_id, value (a secret),
--- binary, stages, created}. The value is registered for masking in this run's output.
function M.get_value(name, opts)
  opts = opts or {}
  local row = row_of(name)
  local v = resolve_version(row.name, opts)
  local value = vault.open("secret", row.name, v.seq, v.key_id, v.ct)
  local ok, err = pcall(vault.audit, "read", "secret", row.name, v.version_id, "ok", v.value_mac)
  if not ok then
    value:close()
    error(err, 0) -- fail closed: no audit record, no value
  end
  if opts.json_key then
    local whole = value
    value = json_value(row.name, whole, opts.json_key)
    whole:close()
  end
  local _, by_seq = stages_of(row.name)
  return {
    name = row.name, version_id = v.version_id, value = value, binary = v.binary == 1,
    stages = by_seq[v.seq] or {}, created = v.created_us / 1e6,
  }
end

--- Every top-level key of a JSON SecretString as a secret, in one audited read: {key = secret}.
--- opts as get_value (stage, version_id). Raises EINPUT when the value is not a JSON object.
function M.get_fields(name, opts)
  opts = opts or {}
  local got = M.get_value(name, { stage = opts.stage, version_id = opts.version_id })
  local ok, doc = pcall(json.decode, got.value:reveal())
  got.value:close()
  if not ok or type(doc) ~= "table" then
    fail("EINPUT", "secret '%s': the value is not a JSON object", got.name)
  end
  local out = {}
  for k, x in pairs(doc) do
    local s = type(x) == "table" and json.encode(x) or tostring(x)
    out[k] = native.new(s)
    if #s >= native.MASK_MIN_LEN then
      native.mask(out[k])
    end
  end
  return out
end

--- The value of name as a secret (the common case of get_value).
function M.get(name, opts)
  return M.get_value(name, opts).value
end

--- DescribeSecret: metadata, never a value.
function M.describe(name)
  local row = row_of(name, true)
  return {
    name = row.name, description = row.description, created = row.created_us / 1e6,
    updated = row.updated_us / 1e6, deletion_date = row.purge_us and row.purge_us / 1e6,
    rotation_handler = row.rotation_handler, rotation_days = row.rotation_days,
    last_rotated = row.rotated_us and row.rotated_us / 1e6, versions = M.list_versions(name),
  }
end

--- ListSecretVersionIds: every version with its stages, oldest first.
function M.list_versions(name)
  local row = row_of(name, true)
  local _, by_seq = stages_of(row.name)
  local out = {}
  for _, v in ipairs(db.rows("SELECT seq, version_id, binary, created_us FROM secret_versions "
    .. "WHERE name = ? ORDER BY seq", row.name)) do
    out[#out + 1] = { version_id = v.version_id, stages = by_seq[v.seq] or {},
      created = v.created_us / 1e6, binary = v.binary == 1 }
  end
  return out
end

--- ListSecrets: every secret's metadata, by name (include_deleted for those awaiting deletion).
function M.list(opts)
  opts = opts or {}
  vault.unlock()
  purge_expired()
  local out = {}
  for _, r in ipairs(db.rows("SELECT name, description, created_us, updated_us, purge_us, "
    .. "rotation_days FROM secrets ORDER BY name")) do
    if opts.include_deleted or not r.purge_us then
      out[#out + 1] = { name = r.name, description = r.description, created = r.created_us / 1e6,
        updated = r.updated_us / 1e6, deletion_date = r.purge_us and r.purge_us / 1e6,
        rotation_days = r.rotation_days }
    end
  end
  return out
end

--- UpdateSecretVersionStage: moves stage to the version move_to (a version id) and/or removes
--- it from remove_from. Moving AWSCURRENT leaves AWSPREVIOUS on the former current version.
function M.update_stage(name, stage, opts)
  opts = opts or {}
  local row = row_of(name)
  check_stage(stage)
  local by_stage = stages_of(row.name)
  local to = opts.move_to and version_by_id(row.name, opts.move_to)
  local from = opts.remove_from and version_by_id(row.name, opts.remove_from)
  if from and by_stage[stage] ~= from.seq then
    fail("EINPUT", "secret '%s': the stage %s is not on version '%s'", name, stage,
      opts.remove_from)
  end
  if not to and not from then
    fail("EINPUT", "secret '%s': update_stage needs move_to or remove_from", name)
  end
  if stage == "AWSCURRENT" and not to then
    fail("EINPUT", "secret '%s': AWSCURRENT can only be moved, not removed", name)
  end
  db.tx(function()
    if to then
      move_stage(row.name, stage, to.seq)
    else
      db.exec("DELETE FROM secret_stages WHERE name = ? AND stage = ?", row.name, stage)
    end
    set_head(row.name)
    vault.audit("label", "secret", row.name, to and to.version_id or from.version_id, "ok")
  end)
end

--- DeleteSecret. opts: recovery_days (7 to 30, default 30) or force (delete now). A forced
--- delete of a missing secret is not an error. Returns the deletion date (seconds), or nil.
function M.delete(name, opts)
  opts = opts or {}
  check_name(name)
  if opts.force and opts.recovery_days then
    fail("EINPUT", "secret '%s': recovery_days and force exclude each other", name)
  end
  local days = opts.recovery_days or 30
  if not opts.force and (math.type(days) ~= "integer" or days < 7 or days > 30) then
    fail("EINPUT", "secret '%s': the recovery window must be 7 to 30 days, not %s", name,
      tostring(days))
  end
  vault.unlock()
  if opts.force then
    db.tx(function()
      db.exec("DELETE FROM secret_versions WHERE name = ?", name)
      db.exec("DELETE FROM secret_stages WHERE name = ?", name)
      db.exec("DELETE FROM secrets WHERE name = ?", name)
      vault.audit("delete", "secret", name, nil, "ok")
    end)
    return nil
  end
  local row = row_of(name, true)
  local at = vault.now_us() + days * DAY_US
  db.tx(function()
    db.exec("UPDATE secrets SET purge_us = ? WHERE name = ?", at, row.name)
    set_head(row.name)
    vault.audit("delete", "secret", row.name, nil, "scheduled")
  end)
  return at / 1e6
end

--- RestoreSecret: cancels a scheduled deletion.
function M.restore(name)
  local row = row_of(name, true)
  if not row.purge_us then
    fail("EINPUT", "secret '%s' is not scheduled for deletion", name)
  end
  db.tx(function()
    db.exec("UPDATE secrets SET purge_us = NULL WHERE name = ?", row.name)
    set_head(row.name)
    vault.audit("restore", "secret", row.name, nil, "ok")
  end)
end

-- Rotation ---------------------------------------------------------------------------------

local function handler_of(h)
  if type(h) == "string" then
    local ok, mod = pcall(require, h)
    if not ok then
      -- The first line only: require's message goes on with every path it searched.
      local why = tostring(mod):match("^[^\n]*"):gsub(":%s*$", "")
      fail("EINPUT", "rotation handler '%s' cannot be loaded: %s", h, why)
    end
    h = mod
  end
  if type(h) == "function" then
    return function(step, ctx)
      return h(step, ctx)
    end
  elseif type(h) == "table" then
    return function(step, ctx)
      local f = h[step]
      if f then
        return f(ctx)
      end
    end
  end
  fail("EINPUT", "a rotation handler is a function, a table of steps or a module name")
end

--- Rotates name now: createSecret, setSecret, testSecret, finishSecret, each a call of the
--- handler with (step, ctx) where ctx = {secret_id, token, secrets = this module}. createSecret
--- must put the new value with version_id = ctx.token and stages = {"AWSPENDING"}; when the
--- handler's finishSecret has not moved AWSCURRENT, tide moves it. A failed step leaves
--- AWSPENDING in place, and the next rotate resumes with the same token. opts: handler (when
--- none is stored), every_days (store a schedule; handler must then be a module name).
--- Returns the new current version id.
function M.rotate(name, opts)
  opts = opts or {}
  local row = row_of(name)
  if opts.every_days then
    if type(opts.handler or row.rotation_handler) ~= "string" then
      fail("EINPUT", "secret '%s': a rotation schedule needs a handler module name", name)
    end
    if math.type(opts.every_days) ~= "integer" or opts.every_days < 1 or opts.every_days > 1000 then
      fail("EINPUT", "secret '%s': every_days must be 1 to 1000", name)
    end
  end
  local handler = handler_of(opts.handler or row.rotation_handler
    or fail("EINPUT", "secret '%s' has no rotation handler", name))
  local by_stage = stages_of(row.name)
  local token
  if by_stage.AWSPENDING and by_stage.AWSPENDING ~= by_stage.AWSCURRENT then
    local pending = db.row("SELECT version_id FROM secret_versions WHERE name = ? AND seq = ?",
      row.name, by_stage.AWSPENDING)
    if pending.version_id ~= row.rotation_token then
      fail("ECONFLICT", "a rotation of secret '%s' is already in progress", name)
    end
    token = row.rotation_token
  else
    token = row.rotation_token or M.new_version_id()
  end
  db.tx(function()
    db.exec("UPDATE secrets SET rotation_token = ? WHERE name = ?", token, row.name)
    if opts.every_days then
      db.exec("UPDATE secrets SET rotation_handler = ?, rotation_days = ? WHERE name = ?",
        opts.handler or row.rotation_handler, opts.every_days, row.name)
      set_head(row.name)
    end
  end)
  local ctx = { secret_id = row.name, token = token, client_request_token = token, secrets = M }
  for _, step in ipairs(STEPS) do
    local ok, err = pcall(handler, step, ctx)
    if not ok then
      vault.audit("rotate", "secret", row.name, token, step .. " failed")
      local msg = tide.is_error(err) and err.message or tostring(err)
      fail(tide.is_error(err) and err.code or "EINPUT", "rotation of secret '%s' failed at %s: %s",
        name, step, native.mask_text(msg))
    end
    if step == "createSecret" then
      local v = db.row("SELECT seq FROM secret_versions WHERE name = ? AND version_id = ?",
        row.name, token)
      if not v then
        fail("EINPUT", "rotation of secret '%s': createSecret did not put version %s", name, token)
      end
    end
  end
  local now_current = stages_of(row.name).AWSCURRENT
  local v = version_by_id(row.name, token)
  db.tx(function()
    if now_current ~= v.seq then
      move_stage(row.name, "AWSCURRENT", v.seq)
    end
    db.exec("DELETE FROM secret_stages WHERE name = ? AND stage = 'AWSPENDING'", row.name)
    db.exec("UPDATE secrets SET rotation_token = NULL, rotated_us = ? WHERE name = ?",
      vault.now_us(), row.name)
    set_head(row.name)
    vault.audit("rotate", "secret", row.name, token, "ok")
  end)
  return token
end

--- Rotates every secret whose schedule is due; returns the names rotated and the failures
--- ({name, error}).
function M.rotate_due()
  vault.unlock()
  purge_expired()
  local now = vault.now_us()
  local done, failed = {}, {}
  for _, r in ipairs(db.rows("SELECT name, rotation_days, rotated_us, created_us FROM secrets "
    .. "WHERE rotation_days IS NOT NULL AND purge_us IS NULL ORDER BY name")) do
    if (r.rotated_us or r.created_us) + r.rotation_days * DAY_US <= now then
      local ok, err = pcall(M.rotate, r.name)
      if ok then
        done[#done + 1] = r.name
      else
        failed[#failed + 1] = { name = r.name, error = err }
      end
    end
  end
  return done, failed
end

return M
