--- tide.params: a Parameter Store in state.db. Hierarchical names, the types String,
--- StringList and SecureString, up to 100 versions with labels, the Standard and Advanced tiers,
--- and the policies Expiration, ExpirationNotification and NoChangeNotification, evaluated by
--- tide whenever the store is read. Every value is sealed at rest; SecureString values come
--- back as secret userdata and are masked in run output.
local db = require("tide.db")
local json = require("tide.json")
local native = require("tide._secret")
local vault = require("tide.vault")

local M = {}

local fail = vault.fail
local TYPES = { String = true, StringList = true, SecureString = true }
local TIER_LIMIT = { Standard = 4096, Advanced = 8192 }
local MAX_VERSIONS = 100
local MAX_LEVELS = 15
local MAX_LABELS = 10
local UNIT_US = { Days = 86400 * 1000000, Hours = 3600 * 1000000 }

local checked = {} -- name -> canonical name: a build reads the same names over and over
local canonical_name

--- The canonical form of a parameter name ("/x" and "x" are the same parameter), or an EINPUT
--- error naming the rule it breaks.
function M.check_name(name)
  local c = checked[name]
  if c then
    return c
  end
  c = canonical_name(name)
  checked[name] = c
  return c
end

function canonical_name(name)
  if type(name) ~= "string" or name == "" then
    fail("EINPUT", "invalid parameter name %s", tostring(name))
  end
  if #name > 1011 then
    fail("EINPUT", "invalid parameter name: longer than 1011 characters")
  end
  if name:find("[^%w_.%-/]") then
    fail("EINPUT", "invalid parameter name '%s': only letters, digits, '_', '.', '-' and '/' "
      .. "are allowed", name)
  end
  if name:find("/", 2, true) and name:sub(1, 1) ~= "/" then
    fail("EINPUT", "invalid parameter name '%s': a hierarchical name starts with '/'", name)
  end
  if name:find("//", 1, true) or (#name > 1 and name:sub(-1) == "/") or name == "/" then
    fail("EINPUT", "invalid parameter name '%s': empty hierarchy level", name)
  end
  local levels = select(2, name:gsub("/", "/"))
  if levels > MAX_LEVELS or (name:sub(1, 1) ~= "/" and levels >= MAX_LEVELS) then
    fail("EINPUT", "invalid parameter name '%s': more than %d hierarchy levels", name, MAX_LEVELS)
  end
  local first = (name:match("^/?([^/]+)") or ""):lower()
  if first:sub(1, 3) == "aws" or first:sub(1, 3) == "ssm" then
    fail("EINPUT", "invalid parameter name '%s': names may not begin with 'aws' or 'ssm'", name)
  end
  if not name:find("/", 2, true) and name:sub(1, 1) == "/" then
    return name:sub(2)
  end
  return name
end
local check_name = M.check_name

local function check_label(label)
  if type(label) ~= "string" or label == "" or #label > 100 or label:find("[^%w_.%-]")
    or label:find("^%d") or label:lower():find("^aws") or label:lower():find("^ssm") then
    return false
  end
  return true
end

-- Policies -------------------------------------------------------------------------------

-- Days from 1970-01-01 to a civil date (proleptic Gregorian), without the local time zone.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- An ISO 8601 timestamp as AWS takes it (2024-05-13T00:00:00, optional fraction, then Z, an
-- offset +hh:mm / -hh:mm, or nothing for UTC) -> microseconds since the epoch, or nil.
local function parse_time(s)
  local y, mo, d, h, mi, sec, rest = tostring(s):match(
    "^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
  if not y then
    return nil
  end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi),
    tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 60 then
    return nil
  end
  rest = rest:gsub("^%.%d+", "")
  local offset = 0
  if rest ~= "" and rest ~= "Z" then
    local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
    if not sign or tonumber(oh) > 23 or tonumber(om) > 59 then
      return nil
    end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "+" and 1 or -1)
  end
  local t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
  return t * 1000000
end
M._parse_time = parse_time -- for the tests

--- Parses policies (a JSON text or a list of tables). Returns the canonical JSON text, or nil
--- for none ("[{}]" or an empty list clears).
function M.parse_policies(p)
  local list = p
  if type(p) == "string" then
    local ok, v = pcall(json.decode, p)
    if not ok or type(v) ~= "table" then
      fail("EINPUT", "parameter policies: not a JSON array")
    end
    list = v
  end
  if type(list) ~= "table" then
    fail("EINPUT", "parameter policies: a JSON array expected")
  end
  local out = {}
  for i, pol in ipairs(list) do
    if type(pol) ~= "table" then
      fail("EINPUT", "parameter policy %d: an object expected", i)
    end
    if next(pol) ~= nil then
      local a = pol.Attributes or {}
      if pol.Type == "Expiration" then
        if not parse_time(a.Timestamp) then
          fail("EINPUT", "parameter policy %d: Expiration needs an ISO 8601 Timestamp", i)
        end
      elseif pol.Type == "ExpirationNotification" or pol.Type == "NoChangeNotification" then
        local n = tonumber(pol.Type == "NoChangeNotification" and a.After or a.Before)
        if not n or n < 1 or n ~= math.floor(n) or not UNIT_US[a.Unit] then
          fail("EINPUT", "parameter policy %d: %s needs %s (a positive integer) and Unit Days or "
            .. "Hours", i, pol.Type, pol.Type == "NoChangeNotification" and "After" or "Before")
        end
      else
        fail("EINPUT", "parameter policy %d: unknown Type '%s'", i, tostring(pol.Type))
      end
      out[#out + 1] = { Type = pol.Type, Version = pol.Version or "1.0", Attributes = a }
    end
  end
  if #out > 10 then
    fail("ELIMIT", "parameter policies: at most 10")
  end
  if #out == 0 then
    return nil
  end
  return json.encode(out)
end

local function delete_param(name)
  db.exec("DELETE FROM param_versions WHERE name = ?", name)
  db.exec("DELETE FROM param_labels WHERE name = ?", name)
  db.exec("DELETE FROM params WHERE name = ?", name)
end

local function evaluate(row, now)
  local expired = false
  for _, pol in ipairs(json.decode(row.policies)) do
    local a = pol.Attributes
    if pol.Type == "Expiration" then
      local at = parse_time(a.Timestamp)
      if now >= at then
        expired = true
      end
    elseif pol.Type == "ExpirationNotification" then
      local at
      for _, q in ipairs(json.decode(row.policies)) do
        if q.Type == "Expiration" then
          at = parse_time(q.Attributes.Timestamp)
        end
      end
      if at and now >= at - tonumber(a.Before) * UNIT_US[a.Unit] and now < at then
        vault.event("param", row.name, "expiration-notification:" .. at, ("expires at %s")
          :format(os.date("!%Y-%m-%dT%H:%M:%SZ", at // 1000000)))
      end
    elseif pol.Type == "NoChangeNotification" then
      if now >= row.modified_us + tonumber(a.After) * UNIT_US[a.Unit] then
        vault.event("param", row.name, "no-change-notification:" .. row.version,
          ("unchanged for %s %s (version %d)"):format(a.After, a.Unit:lower(), row.version))
      end
    end
  end
  if expired then
    db.tx(function()
      delete_param(row.name)
      vault.audit("delete", "param", row.name, row.version, "expired")
    end)
    vault.event("param", row.name, "expired:" .. row.version, "expired and was deleted")
  end
  return expired
end

--- Evaluates every parameter's policies now: expired parameters are deleted, notifications
--- become events (secret_events) and log lines, each once.
function M.evaluate_policies()
  vault.unlock()
  local now = vault.now_us()
  for _, row in ipairs(db.rows("SELECT name, version, modified_us, policies FROM params "
    .. "WHERE policies IS NOT NULL")) do
    evaluate(row, now)
  end
end

-- Put, get -------------------------------------------------------------------------------

-- After any change to what the head covers (vault.param_head): versions, type, tier,
-- policies, labels.
local function set_head(name)
  db.exec("UPDATE params SET head_mac = ? WHERE name = ?",
    db.blob(vault.head_mac("param", name, vault.param_head(name))), name)
end

local function row_of(name)
  local row = db.row("SELECT * FROM params WHERE name = ?", name)
  if not row then
    fail("ENOENT", "parameter '%s' not found", name)
  end
  vault.check_head("param", name, vault.param_head(name), row.head_mac)
  return row
end

local function value_bytes(name, value, ty)
  if type(value) == "string" then
    return native.new(value), true
  elseif ty == "SecureString" and type(value) == "userdata" and value.reveal then
    return value, false
  end
  fail("EINPUT", "parameter '%s': the value must be a string", name)
end

--- PutParameter. opts: type (String, StringList or SecureString; required for a new parameter
--- unless String), overwrite, description, tier (Standard, Advanced, Intelligent-Tiering),
--- policies (JSON text or list; Advanced tier). Returns {version, tier}.
function M.put(name, value, opts)
  opts = opts or {}
  name = check_name(name)
  vault.unlock()
  local existing = db.row("SELECT * FROM params WHERE name = ?", name)
  if existing then
    row_of(name)
    if not opts.overwrite then
      fail("ECONFLICT", "parameter '%s' already exists (use overwrite)", name)
    end
  end
  local ty = opts.type or (existing and existing.type) or "String"
  if not TYPES[ty] then
    fail("EINPUT", "parameter '%s': unknown type '%s' (String, StringList, SecureString)", name,
      tostring(ty))
  end
  if opts.value_from_argv and ty == "SecureString" then
    fail("EINPUT", "parameter '%s' is a SecureString: its value is never taken from the command "
      .. "line: use --from-file FILE or stdin", name)
  end
  if opts.description and #opts.description > 1024 then
    fail("EINPUT", "parameter '%s': the description is longer than 1024 characters", name)
  end
  local v, owned = value_bytes(name, value, ty)
  local policies = existing and existing.policies
  if opts.policies ~= nil then
    policies = M.parse_policies(opts.policies)
  end
  local tier = opts.tier or (existing and existing.tier) or "Standard"
  if tier == "Intelligent-Tiering" then
    tier = (#v > TIER_LIMIT.Standard or policies) and "Advanced" or "Standard"
  end
  if not TIER_LIMIT[tier] then
    fail("EINPUT", "parameter '%s': unknown tier '%s'", name, tostring(tier))
  end
  if existing and existing.tier == "Advanced" and tier == "Standard" then
    tier = "Advanced" -- an Advanced parameter never goes back to Standard
  end
  local function cleanup()
    if owned then
      v:close()
    end
  end
  if #v == 0 then
    cleanup()
    fail("EINPUT", "parameter '%s': the value is empty", name)
  end
  if #v > TIER_LIMIT[tier] then
    local size = #v
    cleanup()
    fail("EINPUT", "parameter '%s': the value is %d bytes, more than %d for the %s tier", name,
      size, TIER_LIMIT[tier], tier)
  end
  if policies and tier ~= "Advanced" then
    cleanup()
    fail("EINPUT", "parameter '%s': policies need the Advanced tier", name)
  end
  local version
  local now = vault.now_us()
  local ok, err = pcall(db.tx, function()
    -- Read again under the write lock: another tide may have written meanwhile.
    local cur = db.row("SELECT version FROM params WHERE name = ?", name)
    if cur and not existing then
      fail("ECONFLICT", "parameter '%s' already exists (use overwrite)", name)
    end
    version = cur and cur.version + 1 or 1
    local count = db.row("SELECT count(*) AS n, min(version) AS oldest FROM param_versions "
      .. "WHERE name = ?", name)
    if count.n >= MAX_VERSIONS then
      if db.row("SELECT 1 AS x FROM param_labels WHERE name = ? AND version = ?", name,
        count.oldest) then
        fail("ELIMIT", "parameter '%s' has %d versions and the oldest (%d) carries a label: "
          .. "move the label first", name, MAX_VERSIONS, count.oldest)
      end
      db.exec("DELETE FROM param_versions WHERE name = ? AND version = ?", name, count.oldest)
    end
    local key_id, ct = vault.seal("param", name, version, v)
    local mac = vault.value_mac(v)
    db.exec("INSERT INTO param_versions (name, version, type, key_id, ct, value_mac, "
      .. "description, modified_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", name, version, ty, key_id,
      ct, db.blob(mac), opts.description or (existing and existing.description), now)
    if existing then
      db.exec("UPDATE params SET version = ?, type = ?, tier = ?, description = ?, policies = ?, "
        .. "modified_us = ? WHERE name = ?", version, ty, tier,
        opts.description or existing.description, policies, now, name)
    else
      db.exec("INSERT INTO params (name, version, type, tier, description, policies, "
        .. "modified_us, head_mac) VALUES (?, ?, ?, ?, ?, ?, ?, x'')", name, version, ty, tier,
        opts.description, policies, now)
    end
    set_head(name)
    vault.audit("write", "param", name, version, "ok", mac)
  end)
  if ok and ty == "SecureString" then
    if #v < native.MASK_MIN_LEN then
      io.stderr:write(("tide: parameter '%s' is shorter than %d bytes: it cannot be masked in "
        .. "output\n"):format(name, native.MASK_MIN_LEN))
    else
      native.mask(v)
    end
  end
  cleanup()
  if not ok then
    error(err, 0)
  end
  return { version = version, tier = tier }
end

local function labels_of(name)
  local by_version = {}
  for _, l in ipairs(db.rows("SELECT label, version FROM param_labels WHERE name = ? "
    .. "ORDER BY label", name)) do
    by_version[l.version] = by_version[l.version] or {}
    table.insert(by_version[l.version], l.label)
  end
  return by_version
end

-- name[:version | :label] -> canonical name, selector, version row.
local function select_version(spec)
  if type(spec) ~= "string" then
    fail("EINPUT", "parameter name expected, got %s", type(spec))
  end
  local base, sel = spec:match("^([^:]*):(.*)$")
  local name = check_name(base or spec)
  local row = row_of(name)
  if row.policies and evaluate(row, vault.now_us()) then
    fail("ENOENT", "parameter '%s' not found (it expired)", name)
  end
  local version = row.version
  if sel then
    if sel:match("^%d+$") then
      version = tonumber(sel)
    else
      local l = db.row("SELECT version FROM param_labels WHERE name = ? AND label = ?", name, sel)
      if not l then
        fail("EINPUT", "parameter '%s' has no label '%s'", name, sel)
      end
      version = l.version
    end
  end
  local v = db.row("SELECT * FROM param_versions WHERE name = ? AND version = ?", name, version)
  if not v then
    fail("EINPUT", "parameter '%s' has no version %d", name, version)
  end
  return name, sel, row, v
end

local function result(row, v, with_decryption, labels, sel)
  local value
  if v.type ~= "SecureString" or with_decryption then
    value = vault.open("param", row.name, v.version, v.key_id, v.ct, v.type == "SecureString")
    local ok, err = pcall(vault.audit, "read", "param", row.name, v.version, "ok", v.value_mac)
    if not ok then
      value:close()
      error(err, 0)
    end
    if v.type ~= "SecureString" then
      local s = value:reveal()
      value:close()
      value = s
    end
  end
  return {
    name = row.name, type = v.type, value = value, version = v.version,
    selector = sel and (":" .. sel) or nil, labels = labels or {},
    last_modified = v.modified_us / 1e6, description = v.description, tier = row.tier,
    policies = row.policies and json.decode(row.policies) or nil,
  }
end

--- GetParameter: name, "name:version" or "name:label". opts.with_decryption gives a
--- SecureString's value (a secret, masked in output); without it the value is nil.
function M.get(spec, opts)
  opts = opts or {}
  vault.unlock()
  if type(spec) == "string" and not spec:find(":", 1, true) then
    -- The common case, the latest version, in one native call.
    local r = vault.param_get(check_name(spec), opts.with_decryption)
    if r then
      return r
    end
  end
  local _, sel, row, v = select_version(spec)
  return result(row, v, opts.with_decryption, labels_of(row.name)[v.version], sel)
end

--- The value alone (a string, or a secret for a SecureString, always decrypted).
function M.value(spec)
  return M.get(spec, { with_decryption = true }).value
end

--- GetParametersByPath. opts: recursive, with_decryption, type (a filter), label (a filter).
--- Returns the parameters below path, sorted by name.
function M.get_by_path(path, opts)
  opts = opts or {}
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    fail("EINPUT", "a path starts with '/'")
  end
  vault.unlock()
  M.evaluate_policies()
  local prefix = path:sub(-1) == "/" and path or path .. "/"
  local out = {}
  for _, row in ipairs(db.rows("SELECT * FROM params ORDER BY name")) do
    local full = row.name:sub(1, 1) == "/" and row.name or "/" .. row.name
    local rest = full:sub(1, #prefix) == prefix and full:sub(#prefix + 1)
    if rest and rest ~= "" and (opts.recursive or not rest:find("/", 1, true))
      and (not opts.type or row.type == opts.type) then
      vault.check_head("param", row.name, vault.param_head(row.name), row.head_mac)
      local labels = labels_of(row.name)[row.version]
      local keep = true
      if opts.label then
        keep = false
        for _, l in ipairs(labels or {}) do
          keep = keep or l == opts.label
        end
      end
      if keep then
        local v = db.row("SELECT * FROM param_versions WHERE name = ? AND version = ?", row.name,
          row.version)
        out[#out + 1] = result(row, v, opts.with_decryption, labels)
      end
    end
  end
  return out
end

--- DescribeParameters-like listing without values: {name, type, version, tier, modified}.
function M.list()
  vault.unlock()
  M.evaluate_policies()
  local out = {}
  for _, row in ipairs(db.rows("SELECT name, type, version, tier, description, modified_us, "
    .. "policies FROM params ORDER BY name")) do
    out[#out + 1] = { name = row.name, type = row.type, version = row.version, tier = row.tier,
      description = row.description, last_modified = row.modified_us / 1e6,
      policies = row.policies and json.decode(row.policies) or nil }
  end
  return out
end

--- GetParameterHistory: every kept version, oldest first. Values as in get.
function M.history(name, opts)
  opts = opts or {}
  name = check_name(name)
  vault.unlock()
  local row = row_of(name)
  local labels = labels_of(name)
  local out = {}
  for _, v in ipairs(db.rows("SELECT * FROM param_versions WHERE name = ? ORDER BY version",
    name)) do
    out[#out + 1] = result(row, v, opts.with_decryption, labels[v.version])
  end
  return out
end

--- LabelParameterVersion: puts labels on version (default the latest), moving them from other
--- versions. Every label is checked first: an invalid label, a missing version or more than ten
--- labels on the version is an error (EINPUT, ELIMIT) and changes nothing. Returns an empty list
--- (AWS's InvalidLabels: here invalid labels are refused instead).
function M.label(name, version, labels)
  name = check_name(name)
  vault.unlock()
  local row = row_of(name)
  version = version or row.version
  if type(labels) == "string" then
    labels = { labels }
  end
  if type(labels) ~= "table" or #labels == 0 then
    fail("EINPUT", "parameter '%s': at least one label expected", name)
  end
  local invalid = {}
  for _, l in ipairs(labels) do
    if not check_label(l) then
      invalid[#invalid + 1] = tostring(l)
    end
  end
  if #invalid > 0 then
    fail("EINPUT", "parameter '%s': invalid labels: %s (a label has at most 100 letters, digits, "
      .. "'.', '-' or '_', does not start with a digit, 'aws' or 'ssm'); nothing was labelled",
      name, table.concat(invalid, ", "))
  end
  if not db.row("SELECT 1 AS x FROM param_versions WHERE name = ? AND version = ?", name,
    version) then
    fail("EINPUT", "parameter '%s' has no version %s to label", name, tostring(version))
  end
  db.tx(function()
    local changed = 0
    for _, l in ipairs(labels) do
      local cur = db.row("SELECT version FROM param_labels WHERE name = ? AND label = ?", name, l)
      if not cur or cur.version ~= version then
        db.exec("INSERT INTO param_labels (name, label, version) VALUES (?, ?, ?) "
          .. "ON CONFLICT (name, label) DO UPDATE SET version = excluded.version", name, l,
          version)
        changed = changed + 1
      end
    end
    local n = db.row("SELECT count(*) AS n FROM param_labels WHERE name = ? AND version = ?",
      name, version).n
    if n > MAX_LABELS then
      fail("ELIMIT", "parameter '%s' version %d would carry %d labels, more than %d", name,
        version, n, MAX_LABELS)
    end
    if changed > 0 then
      set_head(name)
      vault.audit("label", "param", name, version, "ok")
    end
  end)
  return {}
end

--- UnlabelParameterVersion: removes labels from version. Returns the labels that were not there.
function M.unlabel(name, version, labels)
  name = check_name(name)
  vault.unlock()
  row_of(name)
  local missing = {}
  db.tx(function()
    local removed = 0
    for _, l in ipairs(type(labels) == "string" and { labels } or labels) do
      local n = db.exec("DELETE FROM param_labels WHERE name = ? AND label = ? AND version = ?",
        name, l, version)
      if n == 0 then
        missing[#missing + 1] = l
      end
      removed = removed + n
    end
    if removed > 0 then
      set_head(name)
      vault.audit("label", "param", name, version, "ok")
    end
  end)
  return missing
end

--- DeleteParameter.
function M.delete(name)
  name = check_name(name)
  vault.unlock()
  local row = row_of(name)
  db.tx(function()
    delete_param(name)
    vault.audit("delete", "param", name, row.version, "ok")
  end)
end

-- References ------------------------------------------------------------------------------

local function where(ctx)
  if ctx and ctx.file then
    return ctx.file .. (ctx.line and (":" .. ctx.line) or "") .. ": "
  end
  return ""
end

local function resolve_one(ref, ctx)
  local service, rest = ref:match("^resolve:([%w-]+):(.+)$")
  local function bad(msg)
    fail("EINPUT", "%s{{%s}}: %s", where(ctx), ref, msg)
  end
  local ok, res = pcall(function()
    if service == "ssm" or service == "ssm-secure" then
      local name, version = rest:match("^([^:]+):?(%d*)$")
      if not name then
        bad("expected {{resolve:" .. service .. ":NAME[:VERSION]}}")
      end
      local p = M.get(version ~= "" and (name .. ":" .. version) or name,
        { with_decryption = service == "ssm-secure" })
      if service == "ssm" and p.type == "SecureString" then
        bad("a SecureString needs resolve:ssm-secure")
      end
      if type(p.value) == "string" then
        return p.value
      end
      return p.value:reveal()
    elseif service == "secretsmanager" then
      local fields = {}
      for f in (rest .. ":"):gmatch("([^:]*):") do
        fields[#fields + 1] = f
      end
      local id
      if fields[1] == "arn" then
        if #fields < 7 then
          bad("a secret ARN has 7 fields")
        end
        id = fields[7]:gsub("^secret:", "")
        table.move(fields, 8, #fields + 7, 2)
      else
        id = fields[1]
      end
      local what, key, stage, version_id = fields[2], fields[3], fields[4], fields[5]
      if what and what ~= "" and what ~= "SecretString" then
        bad("only SecretString can be resolved")
      end
      if stage and stage ~= "" and version_id and version_id ~= "" then
        bad("a version stage and a version id exclude each other")
      end
      local secrets = require("tide.secrets")
      local got = secrets.get_value(id, { json_key = key ~= "" and key or nil,
        stage = stage ~= "" and stage or nil, version_id = version_id ~= "" and version_id or nil })
      local s = got.value:reveal()
      got.value:close()
      return s
    end
    bad("unknown reference type")
  end)
  if not ok then
    if type(res) == "table" and res.code and not tostring(res.message):find("{{", 1, true) then
      fail(res.code == "ENOENT" and "EINPUT" or res.code, "%s{{%s}}: %s", where(ctx), ref,
        res.message)
    end
    error(res, 0)
  end
  return res
end

local function resolve_string(s, ctx)
  if not s:find("{{resolve:", 1, true) then
    return s
  end
  return (s:gsub("{{(resolve:[^}]*)}}", function(ref)
    return resolve_one(ref, ctx)
  end))
end

--- Replaces {{resolve:ssm:NAME[:VERSION]}}, {{resolve:ssm-secure:NAME[:VERSION]}} and
--- {{resolve:secretsmanager:ID[:SecretString[:KEY[:STAGE[:VERSION_ID]]]]}} in a string, or in
--- every string (values and keys) of a table, returned as a copy. Secret values are registered
--- for masking. ctx {file=, line=} names the place in errors (EINPUT).
function M.resolve_refs(x, ctx)
  if type(x) == "string" then
    return resolve_string(x, ctx)
  elseif type(x) ~= "table" then
    return x
  end
  local out = {}
  for k, v in pairs(x) do
    local key = type(k) == "string" and resolve_string(k, ctx) or k
    out[key] = M.resolve_refs(v, ctx)
  end
  return setmetatable(out, getmetatable(x))
end

return M
