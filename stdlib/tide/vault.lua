--- The core shared by tide.secrets and tide.params: their tables in state.db, the key hierarchy,
--- sealing with associated data, and the hash-chained audit log.
---
--- Keys: a master key (TIDE_SECRET_KEY, 64 hex digits; or TIDE_SECRET_PASSPHRASE through
--- Argon2id; or the key file, $TIDE_SECRET_KEY_FILE or HOME/secret.key, created 0600 on first
--- use) derives a wrapping key, an audit key and a key-check value. Data keys are random, sealed
--- under the wrapping key in secret_keys; one is active. Every value is sealed under a data key
--- with associated data binding the store id, "kind:name", the version and the key id.
local tide = require("tide")
local db = require("tide.db")
local native = require("tide._secret")
local runtime = require("tide._runtime")

local M = {}

local SUBKEY_WRAP, SUBKEY_AUDIT, SUBKEY_CHECK = 1, 2, 3
local KCV_TEXT = "tide key check v1"
local HEAD_FORMAT = "2" -- see M.head_mac
local rewrite_heads -- defined with the heads below
-- Argon2id defaults: RFC 9106's second recommended option; the floor is enforced in C.
M.KDF_OPS, M.KDF_MEM = native.KDF_MIN_OPS, native.KDF_MIN_MEM

local schema = {
  [[
  CREATE TABLE secret_meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
  CREATE TABLE secret_keys (id INTEGER PRIMARY KEY, state TEXT NOT NULL,
    created_us INTEGER NOT NULL, wrapped BLOB NOT NULL);
  CREATE TABLE secrets (name TEXT PRIMARY KEY, description TEXT, created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL, purge_us INTEGER, rotation_handler TEXT,
    rotation_days INTEGER, rotated_us INTEGER, rotation_token TEXT,
    next_seq INTEGER NOT NULL, head_mac BLOB NOT NULL);
  CREATE TABLE secret_versions (name TEXT NOT NULL, seq INTEGER NOT NULL,
    version_id TEXT NOT NULL, binary INTEGER NOT NULL, key_id INTEGER NOT NULL,
    ct BLOB NOT NULL, value_mac BLOB NOT NULL, created_us INTEGER NOT NULL,
    PRIMARY KEY (name, seq), UNIQUE (name, version_id));
  CREATE TABLE secret_stages (name TEXT NOT NULL, stage TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (name, stage));
  CREATE TABLE params (name TEXT PRIMARY KEY, version INTEGER NOT NULL, type TEXT NOT NULL,
    tier TEXT NOT NULL, description TEXT, policies TEXT, modified_us INTEGER NOT NULL,
    head_mac BLOB NOT NULL);
  CREATE TABLE param_versions (name TEXT NOT NULL, version INTEGER NOT NULL,
    type TEXT NOT NULL, key_id INTEGER NOT NULL, ct BLOB NOT NULL, value_mac BLOB NOT NULL,
    description TEXT,
    modified_us INTEGER NOT NULL, PRIMARY KEY (name, version));
  CREATE TABLE param_labels (name TEXT NOT NULL, label TEXT NOT NULL,
    version INTEGER NOT NULL, PRIMARY KEY (name, label));
  CREATE TABLE secret_audit (seq INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL,
    run_id INTEGER NOT NULL, step TEXT NOT NULL, op TEXT NOT NULL, kind TEXT NOT NULL,
    name TEXT NOT NULL, version TEXT NOT NULL, outcome TEXT NOT NULL,
    value_mac BLOB NOT NULL, chain BLOB NOT NULL);
  CREATE TABLE secret_events (id INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL,
    kind TEXT NOT NULL, name TEXT NOT NULL, event TEXT NOT NULL, message TEXT NOT NULL,
    UNIQUE (kind, name, event));
  ]],
}

--- Raises a TideError; fmt is a string.format pattern.
function M.fail(code, fmt, ...)
  error(tide.error(code, select("#", ...) > 0 and fmt:format(...) or fmt), 0)
end
local fail = M.fail

function M.now_us()
  return math.floor(tide.now() * 1e6)
end

local state -- the unlocked store of this process: keys live only here
local state_ever -- unlocked once: print masks from then on

local function meta_get(k)
  local r = db.row("SELECT v FROM secret_meta WHERE k = ?", k)
  return r and r.v
end

local function meta_set(k, v)
  db.exec("INSERT INTO secret_meta (k, v) VALUES (?, ?) "
    .. "ON CONFLICT (k) DO UPDATE SET v = excluded.v", k, db.blob(tostring(v)))
end

local function home()
  local h = runtime.home()
  if not h then
    local ok, msg = runtime.open_store(os.getenv("TIDE_HOME") or ".tide")
    if not ok then
      fail("EINPUT", "%s", msg)
    end
    h = runtime.home()
  end
  return h
end

--- Where reads are journaled before their value is released (see the audit log below).
function M.journal_path()
  return home() .. "/audit.journal"
end

function M.key_path()
  local p = os.getenv("TIDE_SECRET_KEY_FILE")
  return (p and p ~= "") and p or home() .. "/secret.key"
end

--- Opens the store (the runtime's) and brings the tables up to date.
function M.migrate()
  home()
  db.migrate("secrets", schema)
end

local function kcv_of(master)
  local check = master:derive(SUBKEY_CHECK)
  local v = check:mac(KCV_TEXT)
  check:close()
  return v
end

--- The master key from the environment or the key file, with its source word. Environment
--- variables are wiped and unset as they are read. prefix is "TIDE_SECRET_" or, for the new key
--- of a rekey, "TIDE_SECRET_NEW_".
local function master_key(prefix, kdf)
  local k, msg, code = native.key_env(prefix .. "KEY")
  if k then
    return k, "env"
  elseif code ~= "ENOENT" then
    fail("ECRYPTO", "%s", msg)
  end
  local pw = native.take_env(prefix .. "PASSPHRASE")
  if pw then
    k, msg = native.key_passphrase(pw, kdf.salt, kdf.ops, kdf.mem)
    pw:close()
    if not k then
      fail("ECRYPTO", "cannot derive the master key from the passphrase: %s", msg)
    end
    return k, "passphrase"
  end
  return nil
end

local function kdf_params()
  local salt = meta_get("kdf_salt")
  if salt then
    local ops, mem = math.tointeger(tonumber(meta_get("kdf_ops"))),
      math.tointeger(tonumber(meta_get("kdf_mem")))
    if not ops or not mem or ops < 1 or mem < 1 or #salt ~= 16 then
      fail("ECORRUPT", "the secret store's key derivation parameters (kdf_salt, kdf_ops, kdf_mem "
        .. "in secret_meta) are corrupt")
    end
    return { salt = salt, ops = ops, mem = mem }
  end
  return { salt = native.random(16), ops = M.KDF_OPS, mem = M.KDF_MEM, new = true }
end

local function key_file(path, create)
  local k, msg = native.key_file(path, create)
  if not k then
    fail("ECRYPTO", "cannot read the master key: %s", msg)
  end
  return k
end

local function init_store(master, source, kdf)
  db.tx(function()
    if meta_get("kcv") then
      return -- another tide initialised it meanwhile; the caller checks the key again
    end
    meta_set("uuid", native.random(16))
    meta_set("kcv", kcv_of(master))
    meta_set("source", source)
    meta_set("head_format", HEAD_FORMAT)
    if source == "passphrase" then
      meta_set("kdf_salt", kdf.salt)
      meta_set("kdf_ops", kdf.ops)
      meta_set("kdf_mem", kdf.mem)
    end
    local wrap = master:derive(SUBKEY_WRAP)
    local uuid = meta_get("uuid")
    local dek, sealed = native.new_data_key(wrap, uuid, "dek", 0, 1)
    dek:close()
    wrap:close()
    db.exec("INSERT INTO secret_keys (id, state, created_us, wrapped) VALUES (1, 'active', ?, ?)",
      M.now_us(), db.blob(sealed))
    meta_set("active_key", 1)
  end)
end

local raw_write = getmetatable(io.stdout).__index.write

--- Writes to f without masking: for `tide secret get` and `tide param get`, whose output is the
--- value the user asked for.
function M.write_plain(f, ...)
  return raw_write(f, ...)
end

-- Lua's print, io.write and writes to io.stdout and io.stderr are run output too: once values
-- can be read, what they write is masked. Writes to other files are not: a script may write a
-- secret into a configuration file on purpose.
local function mask_lua_output()
  local raw_print = print
  print = function(...) -- luacheck: ignore 121
    local n = select("#", ...)
    local parts = table.pack(...)
    for i = 1, n do
      parts[i] = tostring(parts[i])
    end
    return raw_print(native.mask_text(table.concat(parts, "\t", 1, n)))
  end
  local methods = getmetatable(io.stdout).__index
  local function masked_write(f, ...)
    if f ~= io.stdout and f ~= io.stderr then
      return raw_write(f, ...)
    end
    local parts = table.pack(...)
    for i = 1, parts.n do
      if type(parts[i]) == "string" then
        parts[i] = native.mask_text(parts[i])
      end
    end
    return raw_write(f, table.unpack(parts, 1, parts.n))
  end
  methods.write = masked_write
  io.write = function(...) -- luacheck: ignore 122
    return masked_write(io.output(), ...)
  end
end

--- Unlocks the store once per process and returns its state. Raises ECRYPTO for a wrong or
--- missing key: nothing is written then.
function M.unlock()
  if state then
    return state
  end
  M.migrate()
  -- Keys are about to enter memory: no core files. (Not dumpable would also stop same-user
  -- ptrace, but it is inherited by sandbox children before their exec: see tide/secret.h.)
  native.harden(false)
  local kcv = meta_get("kcv")
  local kdf = kdf_params()
  local master, source = master_key("TIDE_SECRET_", kdf)
  if not master then
    local recorded = kcv and meta_get("source")
    if recorded == "env" then
      fail("ECRYPTO", "the secret store's master key is missing: set TIDE_SECRET_KEY")
    elseif recorded == "passphrase" then
      fail("ECRYPTO", "the secret store is locked with a passphrase: set TIDE_SECRET_PASSPHRASE")
    end
    source = "file"
    master = key_file(M.key_path(), kcv == nil)
    if kcv and not native.equal(kcv_of(master), kcv) then
      -- A rekey that committed before its new key file was moved into place.
      local pending = M.key_path() .. ".new"
      local f = io.open(pending, "rb")
      if f then
        f:close()
        local new = key_file(pending, false)
        if native.equal(kcv_of(new), kcv) then
          assert(os.rename(pending, M.key_path()))
          master:close()
          master = new
        else
          new:close()
        end
      end
    end
  end
  if not kcv then
    init_store(master, source, kdf)
    kcv = meta_get("kcv")
  end
  if not native.equal(kcv_of(master), kcv) then
    master:close()
    fail("ECRYPTO", "wrong master key for the secret store in %s (key from %s)", home(), source)
  end
  if not state_ever then
    state_ever = true
    mask_lua_output()
  end
  state = {
    uuid = meta_get("uuid"),
    wrap = master:derive(SUBKEY_WRAP),
    audit = master:derive(SUBKEY_AUDIT),
    deks = {},
    source = source,
  }
  -- The hot path (parameter reads) and the audit queue live in C, with the keys they use.
  state.v = native.vault(state.uuid, state.audit, M.journal_path())
  master:close()
  -- Reads journaled by a tide that died before ingesting them. Best effort: a failure shows at
  -- the next write and in audit_verify, which do not ignore it.
  state.v:flush()
  if meta_get("head_format") ~= HEAD_FORMAT then
    local ok, err = pcall(db.tx, function()
      if meta_get("head_format") ~= HEAD_FORMAT then -- another tide may have done it meanwhile
        rewrite_heads(state.audit, meta_get("head_format") or "1", state.audit)
      end
    end)
    if not ok then
      M.lock()
      error(err, 0)
    end
  end
  return state
end

local verified = {} -- "kind:name" -> the head and MAC last checked, so a repeat costs nothing

--- Forgets the unlocked keys (tests, and after a rekey).
function M.lock()
  verified = {}
  if state then
    state.v:close() -- writes the queued records first
    state.wrap:close()
    state.audit:close()
    for _, k in pairs(state.deks) do
      k:close()
    end
  end
  state = nil
end

local function dek(st, id)
  local k = st.deks[id]
  if k then
    return k
  end
  local row = db.row("SELECT wrapped, state FROM secret_keys WHERE id = ?", id)
  if not row or row.state == "destroyed" then
    fail("ECRYPTO", "data key %d is missing from the secret store", id)
  end
  local msg
  k, msg = native.open_data_key(st.wrap, row.wrapped, st.uuid, "dek", 0, id)
  if not k then
    fail("EINTEGRITY", "data key %d cannot be unwrapped: %s", id, msg)
  end
  st.deks[id] = k
  st.v:add_key(id, k)
  return k
end

local function active_key()
  return tonumber(meta_get("active_key"))
end

--- Seals value (string or secret) for kind ("secret" or "param"), name and version: returns the
--- key id and the sealed bytes as a db.blob.
function M.seal(kind, name, version, value)
  local st = M.unlock()
  local id = active_key()
  return id, db.blob(dek(st, id):seal(value, st.uuid, kind .. ":" .. name, version, id))
end

--- Opens a sealed value: a secret, registered for masking unless mask is false.
function M.open(kind, name, version, key_id, sealed, mask)
  local st = M.unlock()
  local v, msg = dek(st, key_id):open(sealed, st.uuid, kind .. ":" .. name, version, key_id,
    mask ~= false)
  if not v then
    fail("EINTEGRITY", "%s '%s' version %s: %s", kind, name, tostring(version), msg)
  end
  return v
end

--- MAC over a value under the audit key (for the audit log and idempotency checks).
function M.value_mac(value)
  return M.unlock().audit:mac(value)
end

-- Heads: what decides how an item's values are treated or selected, MACed under the audit key
-- (heads change on label moves and policy edits, which do not re-seal values). Format 2 binds
-- a parameter's version, type, tier, policies, every label and every version's type, and a
-- secret's version ids, binary flags, stages, deletion date and rotation settings; format 1
-- (stores written before it) bound only the version or the stages.

-- The same query runs in C (lsecret.c, vault_sql[S_GET]): group_concat over an ordered subquery.
local PARAM_HEAD_SQL = "SELECT p.version, p.type, p.tier, p.policies, "
  .. "(SELECT group_concat(x, ',') FROM (SELECT l.label || '=' || l.version AS x "
  .. "FROM param_labels l WHERE l.name = p.name ORDER BY l.label)) AS labels, "
  .. "(SELECT group_concat(x, ',') FROM (SELECT v.version || '=' || v.type AS x "
  .. "FROM param_versions v WHERE v.name = p.name ORDER BY v.version)) AS types "
  .. "FROM params p WHERE p.name = ?"

local function text(x)
  return x == nil and "" or tostring(x)
end

--- The head of parameter name as its head MAC covers it, or nil when it does not exist.
function M.param_head(name)
  local r = db.row(PARAM_HEAD_SQL, name)
  if not r then
    return nil
  end
  return string.pack(">s4s4s4s4s4s4", text(r.version), text(r.type), text(r.tier),
    text(r.policies), text(r.labels), text(r.types))
end

local function head_mac_with(key, kind, name, head)
  return key:mac(string.pack(">s2s2s4", "head", kind .. ":" .. name, head))
end

--- The MAC that pins the head of an item, so that a row swapped for an older valid one, or an
--- edited type, label or stage, is detected.
function M.head_mac(kind, name, head)
  return head_mac_with(M.unlock().audit, kind, name, head)
end

function M.check_head(kind, name, head, mac)
  local key = kind .. ":" .. name
  local seen = verified[key]
  if seen and seen.head == head and seen.mac == mac then
    return
  end
  if not native.equal(M.head_mac(kind, name, head), mac) then
    fail("EINTEGRITY", "%s '%s': its head record was altered or rolled back", kind, name)
  end
  verified[key] = { head = head, mac = mac }
end

-- The audit log ----------------------------------------------------------------------------

local function record_bytes(r)
  return string.pack(">i8i8i8s2s2s2s2s2s2s1", r.seq, r.ts_us, r.run_id, r.step, r.op, r.kind,
    r.name, r.version, r.outcome, r.value_mac)
end

-- Fail-closed and durable, at the cost of neither a commit per read nor a lost record: a read's
-- record (written in C, with the vault: native.vault) is appended to $TIDE_HOME/audit.journal
-- with one write(2), MACed under the audit key, before the value is released; a failed or short
-- append refuses the read. Like sqlite's WAL with synchronous=NORMAL, a record in the journal
-- survives the death of the process (not a power cut). The journal is ingested into the
-- hash-chained secret_audit table, in order and under the database write lock: by a timer within
-- 200 ms of a read, before any write's own record (writes, rotations and deletions are recorded
-- in their own transaction), when the process ends (the vault's finaliser), at the next unlock
-- by any tide, and by audit_verify and audit_list. It is truncated only after the ingesting
-- transaction commits; the ingested prefix is marked in secret_meta in that transaction, so no
-- record is ingested twice.
local FLUSH_MS = 200
local timer

-- The vault asked for a tick: within FLUSH_MS it writes the queued reads and protects the keys
-- it kept readable for them again.
local function schedule_tick()
  if not timer then
    timer = require("tide.uv").new_timer()
    timer:unref() -- never keeps the run alive
  end
  timer:start(FLUSH_MS, 0, function()
    if state then
      state.v:tick()
    end
  end)
end

local function flush(st)
  local ok, msg, code = st.v:flush()
  if not ok then
    fail(code, "%s", msg)
  end
end

--- Writes every queued audit record now.
function M.audit_flush()
  if state then
    flush(state)
  end
end

--- Records an operation: op ("read", "write", "rotate", "delete", "restore", "label", "rekey",
--- ...), kind, name, version, outcome ("ok" or what failed) and optionally value_mac (a MAC of
--- the value from value_mac(); never the value). A write is recorded at once, with the journaled
--- reads before it; a read is journaled (see above). Raises when the record cannot be written,
--- so that a caller that audits before releasing a value fails closed.
function M.audit(op, kind, name, version, outcome, value_mac)
  local st = M.unlock()
  local ok, tick = st.v:audit(op, kind, name, version and tostring(version) or "",
    outcome or "ok", value_mac or "")
  if not ok then
    fail("EINTEGRITY", "the audit log cannot be written, so nothing is released: %s", tick)
  end
  if tick then
    schedule_tick()
  end
end

--- The latest version of parameter name (canonical) as tide.params returns it, read, checked,
--- opened, masked and audited in one native call; nil when the Lua path must do it (a missing
--- parameter, or one with policies).
function M.param_get(name, decrypt)
  local st = M.unlock()
  local r, tick, code = st.v:param_get(name, decrypt)
  if math.type(r) == "integer" then
    local id = r
    dek(st, id)
    r, tick, code = st.v:param_get(name, decrypt)
    if math.type(r) == "integer" then
      fail("ECRYPTO", "data key %d cannot be used", id)
    end
  end
  if r == nil and tick then
    fail(code, "%s", tick)
  end
  if tick == true then
    schedule_tick()
  end
  return r
end

--- Checks the whole chain, after checking and ingesting the journal's records. Returns the
--- number of records, or raises EINTEGRITY naming the first record that was edited, removed or
--- inserted, or the journal record that does not check.
function M.audit_verify()
  local st = M.unlock()
  flush(st)
  local prev_chain, expect = "tide audit genesis", 1
  local rows = db.rows("SELECT * FROM secret_audit ORDER BY seq")
  for _, r in ipairs(rows) do
    if r.seq ~= expect then
      fail("EINTEGRITY", "audit log: record %d is missing", expect)
    end
    if not native.equal(st.audit:mac(prev_chain .. record_bytes(r)), r.chain) then
      fail("EINTEGRITY", "audit log: record %d was altered", r.seq)
    end
    prev_chain, expect = r.chain, expect + 1
  end
  -- The head pins the last record, so that removing records at the end is detected too.
  local head = meta_get("audit_head")
  if #rows > 0 and not head then
    fail("EINTEGRITY", "audit log: its head pin is missing (records at the end may have been "
      .. "removed with it)")
  end
  local want = st.audit:mac(string.pack(">i8", expect - 1) .. prev_chain)
  if head and not native.equal(head, want) then
    fail("EINTEGRITY", "audit log: records after %d were removed or the head was altered",
      expect - 1)
  end
  return #rows
end

--- The audit records (never values), newest first; and, when the journal's reads could not be
--- ingested first, why.
function M.audit_list(limit)
  -- Journaled reads are ingested first when the key is at hand; the listing needs no key, and
  -- lists what the log holds when the journal cannot be ingested (the second result says why).
  M.migrate()
  local ok, st = pcall(M.unlock)
  local why
  if ok then
    local done, err = pcall(flush, st)
    why = not done and (tide.is_error(err) and err.message or tostring(err)) or nil
  end
  return db.rows("SELECT seq, ts_us, run_id, step, op, kind, name, version, outcome "
    .. "FROM secret_audit ORDER BY seq DESC LIMIT ?", limit or 100), why
end

-- Events (policy notifications) ----------------------------------------------------------

--- Records an event once per (kind, name, event) and prints it as a log line. Returns true when
--- it was new.
function M.event(kind, name, event, message)
  local changed = db.exec("INSERT OR IGNORE INTO secret_events (ts_us, kind, name, event, "
    .. "message) VALUES (?, ?, ?, ?, ?)", M.now_us(), kind, name, event, message)
  if changed > 0 then
    io.stderr:write("tide: ", kind, " ", name, ": ", message, "\n")
  end
  return changed > 0
end

function M.events(name)
  M.migrate()
  if name then
    return db.rows("SELECT * FROM secret_events WHERE name = ? ORDER BY id", name)
  end
  return db.rows("SELECT * FROM secret_events ORDER BY id")
end

-- Rekey ------------------------------------------------------------------------------------

--- Replaces the master key and the data key, re-sealing every value, in one transaction. The
--- new master key comes from TIDE_SECRET_NEW_KEY or TIDE_SECRET_NEW_PASSPHRASE when set, else a
--- new key file (written beside the old one as .new, moved into place after the commit; an
--- interrupted move is finished by the next unlock). Returns the number of values re-sealed.
function M.rekey()
  local st = M.unlock()
  flush(st)
  local kdf = { salt = native.random(16), ops = M.KDF_OPS, mem = M.KDF_MEM }
  local new, source = master_key("TIDE_SECRET_NEW_", kdf)
  local pending
  if not new then
    source = "file"
    pending = M.key_path() .. ".new"
    os.remove(pending)
    new = key_file(pending, true)
  end
  local wrap = new:derive(SUBKEY_WRAP)
  local audit_key = new:derive(SUBKEY_AUDIT)
  local count = 0
  -- Everything is opened before the transaction: a value that does not open stops the rekey.
  local svals, pvals = {}, {}
  for _, r in ipairs(db.rows("SELECT name, seq, key_id, ct FROM secret_versions")) do
    svals[#svals + 1] = { r = r, v = M.open("secret", r.name, r.seq, r.key_id, r.ct, false) }
  end
  for _, r in ipairs(db.rows("SELECT name, version, key_id, ct FROM param_versions")) do
    pvals[#pvals + 1] = { r = r, v = M.open("param", r.name, r.version, r.key_id, r.ct, false) }
  end
  local old_audit = st.audit
  db.tx(function()
    local id = (db.row("SELECT max(id) AS id FROM secret_keys").id or 0) + 1
    local dk, sealed = native.new_data_key(wrap, st.uuid, "dek", 0, id)
    db.exec("UPDATE secret_keys SET state = 'destroyed', wrapped = x''")
    db.exec("DELETE FROM secret_keys")
    db.exec("INSERT INTO secret_keys (id, state, created_us, wrapped) VALUES (?, 'active', ?, ?)",
      id, M.now_us(), db.blob(sealed))
    for _, x in ipairs(svals) do
      local ct = dk:seal(x.v, st.uuid, "secret:" .. x.r.name, x.r.seq, id)
      db.exec("UPDATE secret_versions SET key_id = ?, ct = ?, value_mac = ? WHERE name = ? AND "
        .. "seq = ?", id, db.blob(ct), db.blob(audit_key:mac(x.v)), x.r.name, x.r.seq)
      count = count + 1
    end
    for _, x in ipairs(pvals) do
      local ct = dk:seal(x.v, st.uuid, "param:" .. x.r.name, x.r.version, id)
      db.exec("UPDATE param_versions SET key_id = ?, ct = ?, value_mac = ? WHERE name = ? AND "
        .. "version = ?", id, db.blob(ct), db.blob(audit_key:mac(x.v)), x.r.name, x.r.version)
      count = count + 1
    end
    -- Head MACs and the audit chain are keyed by the audit key: recompute them under the new one.
    rewrite_heads(old_audit, meta_get("head_format") or "1", audit_key)
    M.audit_verify()
    local prev = "tide audit genesis"
    for _, r in ipairs(db.rows("SELECT * FROM secret_audit ORDER BY seq")) do
      local chain = audit_key:mac(prev .. record_bytes(r))
      db.exec("UPDATE secret_audit SET chain = ? WHERE seq = ?", db.blob(chain), r.seq)
      meta_set("audit_head", audit_key:mac(string.pack(">i8", r.seq) .. chain))
      prev = chain
    end
    meta_set("kcv", kcv_of(new))
    meta_set("source", source)
    meta_set("active_key", id)
    if source == "passphrase" then
      meta_set("kdf_salt", kdf.salt)
      meta_set("kdf_ops", kdf.ops)
      meta_set("kdf_mem", kdf.mem)
    end
    dk:close()
  end)
  for _, x in ipairs(svals) do
    x.v:close()
  end
  for _, x in ipairs(pvals) do
    x.v:close()
  end
  wrap:close()
  audit_key:close()
  if pending then
    assert(os.rename(pending, M.key_path()))
  end
  M.lock()
  -- The new key stays unlocked in this process (an environment key cannot be read twice).
  state = {
    uuid = meta_get("uuid"), wrap = new:derive(SUBKEY_WRAP), audit = new:derive(SUBKEY_AUDIT),
    deks = {}, source = source,
  }
  state.v = native.vault(state.uuid, state.audit, M.journal_path())
  new:close()
  M.audit("rekey", "store", "", nil, "ok")
  return count
end

-- Format 1 of a secret's head: its next version number and where each stage points.
local function secret_head_v1(name)
  local row = db.row("SELECT next_seq FROM secrets WHERE name = ?", name)
  local parts = { tostring(row and row.next_seq or 0) }
  for _, s in ipairs(db.rows("SELECT stage, seq FROM secret_stages WHERE name = ? ORDER BY stage",
    name)) do
    parts[#parts + 1] = s.stage .. "=" .. s.seq
  end
  return table.concat(parts, ";")
end

--- The head of a secret as its head MAC covers it: the format 1 head, then every version's
--- number, id and binary flag, the deletion date and the rotation settings, each length-framed.
function M.secret_head(name)
  local row = db.row("SELECT purge_us, rotation_handler, rotation_days FROM secrets "
    .. "WHERE name = ?", name) or {}
  local parts = { string.pack(">s4", secret_head_v1(name)) }
  for _, v in ipairs(db.rows("SELECT seq, version_id, binary FROM secret_versions WHERE name = ? "
    .. "ORDER BY seq", name)) do
    parts[#parts + 1] = string.pack(">s4s4s4", text(v.seq), text(v.version_id), text(v.binary))
  end
  parts[#parts + 1] = string.pack(">s4s4s4", text(row.purge_us), text(row.rotation_handler),
    text(row.rotation_days))
  return table.concat(parts)
end

-- Rewrites every head MAC under key new after checking it under key old with the head format
-- old_format (1 or 2). Inside the caller's transaction.
function rewrite_heads(old, old_format, new)
  for _, r in ipairs(db.rows("SELECT name, head_mac FROM secrets")) do
    local was = old_format == "1" and secret_head_v1(r.name) or M.secret_head(r.name)
    if not native.equal(head_mac_with(old, "secret", r.name, was), r.head_mac) then
      fail("EINTEGRITY", "secret '%s': its head record was altered or rolled back", r.name)
    end
    db.exec("UPDATE secrets SET head_mac = ? WHERE name = ?",
      db.blob(head_mac_with(new, "secret", r.name, M.secret_head(r.name))), r.name)
  end
  for _, r in ipairs(db.rows("SELECT name, version, head_mac FROM params")) do
    local was = old_format == "1" and tostring(r.version) or M.param_head(r.name)
    if not native.equal(head_mac_with(old, "param", r.name, was), r.head_mac) then
      fail("EINTEGRITY", "parameter '%s': its head record was altered or rolled back", r.name)
    end
    db.exec("UPDATE params SET head_mac = ? WHERE name = ?",
      db.blob(head_mac_with(new, "param", r.name, M.param_head(r.name))), r.name)
  end
  meta_set("head_format", HEAD_FORMAT)
end

return M
