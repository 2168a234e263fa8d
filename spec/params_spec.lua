-- tide.params: name rules, types, versions and labels, tiers, paths, policies and references.
local h = require("spec.helper")
local db = require("tide.db")
local params = require("tide.params")
local secrets = require("tide.secrets")
local vault = require("tide.vault")

local n = 0
local function fresh(prefix)
  n = n + 1
  return ("%s/p%d_%d"):format(prefix or "/t", n, math.random(1, 1e9))
end

local function count(name)
  return db.row("SELECT count(*) AS n FROM param_versions WHERE name = ?", name).n
end

describe("tide.params", function()
  it("applies the name rules", function()
    assert.equal("MyParameter", params.check_name("/MyParameter"))
    assert.equal("MyParameter", params.check_name("MyParameter"))
    assert.equal("/a/b.c-d_e", params.check_name("/a/b.c-d_e"))
    assert.equal("/" .. string.rep("a/", 14) .. "b", params.check_name("/" .. string.rep("a/", 14)
      .. "b"))
    h.raises("EINPUT", params.check_name, "/" .. string.rep("a/", 15) .. "b")
    for _, bad in ipairs({ "", "/", "a b", "a/b", "/a//b", "/a/", "/aws/x", "AWSx", "ssm-x",
      "/SSM/y", "x:y", "é" }) do
      h.raises("EINPUT", params.put, bad, "v")
    end
    h.raises("EINPUT", params.check_name, string.rep("a", 1012))
  end)

  it("puts, overwrites, versions and selects by version and label", function()
    local name = fresh()
    assert.equal(1, params.put(name, "https://one.example").version)
    h.raises("ECONFLICT", params.put, name, "https://two.example")
    assert.equal(2, params.put(name, "https://two.example", { overwrite = true }).version)
    assert.equal("https://two.example", params.get(name).value)
    assert.equal("https://one.example", params.get(name .. ":1").value)
    h.raises("EINPUT", params.get, name .. ":3")
    h.raises("EINPUT", params.label, name, 1, { "blue", "9bad", "awsx" })
    assert.is_nil(db.row("SELECT 1 AS x FROM param_labels WHERE name = ?", name))
    assert.same({}, params.label(name, 1, { "blue", "green" }))
    assert.equal("https://one.example", params.get(name .. ":blue").value)
    params.label(name, 2, "blue") -- moves
    assert.equal("https://two.example", params.get(name .. ":blue").value)
    h.raises("EINPUT", params.get, name .. ":nolabel")
    local hist = params.history(name)
    assert.equal(2, #hist)
    assert.same({ "green" }, hist[1].labels)
    assert.same({ "blue" }, hist[2].labels)
    assert.same({}, params.unlabel(name, 2, { "blue" }))
    assert.same({ "blue" }, params.unlabel(name, 2, { "blue" }))
  end)

  it("refuses a label on a missing version and more than ten labels, changing nothing", function()
    local name = fresh()
    params.put(name, "v1")
    h.raises("EINPUT", params.label, name, 5, { "x" })
    assert.is_nil(db.row("SELECT 1 AS x FROM param_labels WHERE name = ?", name))
    local labels = {}
    for i = 1, 11 do
      labels[i] = "l" .. i
    end
    h.raises("ELIMIT", params.label, name, 1, labels)
    assert.is_nil(db.row("SELECT 1 AS x FROM param_labels WHERE name = ?", name))
  end)

  it("keeps 100 versions: drops the oldest, or fails when it carries a label", function()
    local name = fresh()
    params.put(name, "v1")
    db.tx(function()
      for i = 2, 100 do
        params.put(name, "v" .. i, { overwrite = true })
      end
    end)
    assert.equal(100, count(name))
    params.label(name, 1, "keep")
    h.raises("ELIMIT", params.put, name, "v101", { overwrite = true })
    assert.equal(100, count(name))
    assert.equal("v100", params.get(name).value)
    params.unlabel(name, 1, "keep")
    params.put(name, "v101", { overwrite = true })
    assert.equal(100, count(name))
    h.raises("EINPUT", params.get, name .. ":1")
    assert.equal("v2", params.get(name .. ":2").value)
  end)

  it("enforces types and the tier size limits", function()
    local name = fresh()
    h.raises("EINPUT", params.put, name, "v", { type = "Number" })
    params.put(name, "a,b,c", { type = "StringList" })
    assert.equal("StringList", params.get(name).type)
    params.put(fresh(), string.rep("x", 4096))
    h.raises("EINPUT", params.put, fresh(), string.rep("x", 4097))
    local adv = fresh()
    assert.equal("Advanced", params.put(adv, string.rep("x", 8192), { tier = "Advanced" }).tier)
    h.raises("EINPUT", params.put, fresh(), string.rep("x", 8193), { tier = "Advanced" })
    assert.equal("Advanced",
      params.put(fresh(), string.rep("x", 5000), { tier = "Intelligent-Tiering" }).tier)
    local empty = fresh()
    h.raises("EINPUT", params.put, empty, "")
    assert.is_nil(db.row("SELECT 1 AS x FROM params WHERE name = ?", empty))
  end)

  it("returns a SecureString only when asked, as a masked secret", function()
    local name = fresh()
    params.put(name, "secure-param-value", { type = "SecureString" })
    local p = params.get(name)
    assert.is_nil(p.value)
    p = params.get(name, { with_decryption = true })
    assert.equal("***", tostring(p.value))
    assert.equal("secure-param-value", p.value:reveal())
    local row = db.row("SELECT ct FROM param_versions WHERE name = ?", name)
    assert.is_nil(row.ct:find("secure-param-value", 1, true))
  end)

  it("gets by path, recursively or one level", function()
    local root = fresh()
    params.put(root .. "/a/b/c", "abc")
    params.put(root .. "/a/d", "ad")
    params.put(root .. "/a/s", "secure-by-path", { type = "SecureString" })
    local function names(list)
      local out = {}
      for _, p in ipairs(list) do
        out[#out + 1] = p.name
      end
      return out
    end
    assert.same({ root .. "/a/d", root .. "/a/s" }, names(params.get_by_path(root .. "/a")))
    assert.same({ root .. "/a/b/c", root .. "/a/d", root .. "/a/s" },
      names(params.get_by_path(root .. "/a", { recursive = true })))
    assert.same({ root .. "/a/s" }, names(params.get_by_path(root, { recursive = true,
      type = "SecureString" })))
    local s = params.get_by_path(root .. "/a", { with_decryption = true })
    assert.equal("secure-by-path", s[2].value:reveal())
    h.raises("EINPUT", params.get_by_path, "no-slash")
  end)

  describe("policies", function()
    local function iso(t)
      return os.date("!%Y-%m-%dT%H:%M:%S.000Z", t)
    end

    it("need the Advanced tier and valid attributes", function()
      local pol = { { Type = "Expiration", Attributes = { Timestamp = iso(os.time() + 3600) } } }
      h.raises("EINPUT", params.put, fresh(), "v", { policies = pol })
      h.raises("EINPUT", params.put, fresh(), "v", { tier = "Advanced",
        policies = "[{\"Type\":1}]" })
      h.raises("EINPUT", params.put, fresh(), "v", { tier = "Advanced", policies = "nope" })
      h.raises("EINPUT", params.put, fresh(), "v", { tier = "Advanced", policies = {
        { Type = "NoChangeNotification", Attributes = { After = "0", Unit = "Days" } } } })
    end)

    it("deletes an expired parameter and records notifications as events", function()
      local name = fresh()
      params.put(name, "expiring", { tier = "Advanced", policies = {
        { Type = "Expiration", Attributes = { Timestamp = iso(os.time() + 3600) } },
        { Type = "ExpirationNotification", Attributes = { Before = "2", Unit = "Hours" } },
        { Type = "NoChangeNotification", Attributes = { After = "1", Unit = "Hours" } },
      } })
      assert.equal("expiring", params.get(name).value)
      local ev = vault.events(name)
      assert.equal(1, #ev)
      assert.matches("^expiration%-notification", ev[1].event)
      params.get(name) -- once only
      assert.equal(1, #vault.events(name))
      -- An update keeps the policies; an hour later nothing changed and it expired.
      params.put(name, "still-expiring", { overwrite = true })
      db.exec("UPDATE params SET modified_us = modified_us - 7200000000 WHERE name = ?", name)
      params.evaluate_policies()
      assert.equal(2, #vault.events(name))
      local row = db.row("SELECT policies FROM params WHERE name = ?", name)
      db.exec("UPDATE params SET policies = ? WHERE name = ?",
        row.policies:gsub("%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z", iso(os.time() - 1)), name)
      db.exec("UPDATE params SET head_mac = ? WHERE name = ?", db.blob(vault.head_mac("param",
        name, vault.param_head(name))), name)
      h.raises("ENOENT", params.get, name)
      local evs = vault.events(name)
      assert.matches("expired", evs[#evs].message)
      -- "[{}]" clears the policies.
      local other = fresh()
      params.put(other, "v", { tier = "Advanced", policies = {
        { Type = "NoChangeNotification", Attributes = { After = "1", Unit = "Days" } } } })
      params.put(other, "v2", { overwrite = true, policies = "[{}]" })
      assert.is_nil(params.get(other).policies)
    end)
  end)

  describe("references", function()
    it("resolves ssm, ssm-secure and secretsmanager references in strings and tables", function()
      local p, s = fresh(), fresh()
      params.put(p, "plain-url")
      params.put(p, "plain-url-2", { overwrite = true })
      params.put(p .. "/secure", "secure-ref-value", { type = "SecureString" })
      local id = s:gsub("^/", "")
      secrets.put_value(id, '{"password":"json-ref-password","user":"admin"}')
      local first = secrets.list_versions(id)[1].version_id
      secrets.put_value(id, '{"password":"json-ref-password-2"}')
      assert.equal("u=plain-url-2 v1=plain-url", params.resolve_refs(
        "u={{resolve:ssm:" .. p .. "}} v1={{resolve:ssm:" .. p .. ":1}}"))
      assert.equal("secure-ref-value", params.resolve_refs("{{resolve:ssm-secure:" .. p
        .. "/secure}}"))
      local t = params.resolve_refs({ env = { PW = "{{resolve:secretsmanager:" .. id
        .. ":SecretString:password}}", OLD = "{{resolve:secretsmanager:" .. id
        .. ":SecretString:password:AWSPREVIOUS}}", BYID = "{{resolve:secretsmanager:" .. id
        .. ":SecretString:user::" .. first .. "}}" }, n = 3 })
      assert.same({ env = { PW = "json-ref-password-2", OLD = "json-ref-password",
        BYID = "admin" }, n = 3 }, t)
      assert.equal("json-ref-password-2", params.resolve_refs(
        "{{resolve:secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:" .. id
        .. ":SecretString:password}}"))
    end)

    it("names the file and line of a bad reference", function()
      local p = fresh()
      params.put(p, "secure-needs-secure", { type = "SecureString" })
      local ctx = { file = "buildspec.yml", line = 7 }
      local e = h.raises("EINPUT", params.resolve_refs, "{{resolve:ssm:/no/such}}", ctx)
      assert.matches("^buildspec.yml:7: {{resolve:ssm:/no/such}}: ", e.message)
      h.raises("EINPUT", params.resolve_refs, "{{resolve:ssm:" .. p .. "}}", ctx)
      h.raises("EINPUT", params.resolve_refs, "{{resolve:nope:x}}", ctx)
      h.raises("EINPUT", params.resolve_refs, "{{resolve:secretsmanager:x:SecretBinary}}", ctx)
      h.raises("EINPUT", params.resolve_refs, "{{resolve:secretsmanager:x:SecretString:k:S:V}}",
        ctx)
    end)
  end)

  it("detects a parameter whose latest version pointer was rolled back", function()
    local name = fresh()
    params.put(name, "head-1")
    params.put(name, "head-2", { overwrite = true })
    db.exec("UPDATE params SET version = 1 WHERE name = ?", name)
    h.raises("EINTEGRITY", params.get, name)
    db.exec("UPDATE params SET version = 2 WHERE name = ?", name)
    local row = db.row("SELECT ct, key_id FROM param_versions WHERE name = ? AND version = 1", name)
    db.exec("UPDATE param_versions SET ct = ? WHERE name = ? AND version = 2", db.blob(row.ct),
      name)
    h.raises("EINTEGRITY", params.get, name)
  end)

  it("detects an edited type, tier, policies, label or version type, on every path", function()
    local name = fresh()
    params.put(name, "typed-secure-1", { type = "SecureString" })
    params.put(name, "typed-secure-2", { overwrite = true })
    params.label(name, 1, "blue")
    params.label(name, 2, "green")
    assert.is_true(params.get(name .. ":blue", { with_decryption = true }).value
      :equals("typed-secure-1"))
    local function tamper(sql, ...)
      db.exec(sql, ...)
    end
    -- The latest version is read by the native path, whose head cache is warm from here on.
    params.get(name, { with_decryption = true })
    assert.equal("table", type(vault.unlock().v:param_get(name, true)))
    local cases = {
      { "UPDATE params SET type = 'String' WHERE name = ?",
        "UPDATE params SET type = 'SecureString' WHERE name = ?" },
      { "UPDATE param_versions SET type = 'String' WHERE name = ? AND version = 2",
        "UPDATE param_versions SET type = 'SecureString' WHERE name = ? AND version = 2" },
      { "UPDATE param_versions SET type = 'String' WHERE name = ? AND version = 1",
        "UPDATE param_versions SET type = 'SecureString' WHERE name = ? AND version = 1" },
      { "UPDATE params SET tier = 'Advanced' WHERE name = ?",
        "UPDATE params SET tier = 'Standard' WHERE name = ?" },
      { "UPDATE params SET policies = '[]' WHERE name = ?",
        "UPDATE params SET policies = NULL WHERE name = ?" },
      { "UPDATE param_labels SET version = 2 WHERE name = ? AND label = 'blue'",
        "UPDATE param_labels SET version = 1 WHERE name = ? AND label = 'blue'" },
      { "DELETE FROM param_labels WHERE name = ? AND label = 'green'",
        "INSERT INTO param_labels (name, label, version) VALUES (?, 'green', 2)" },
    }
    for _, c in ipairs(cases) do
      tamper(c[1], name)
      for _, read in ipairs({
        function() return params.get(name) end,
        function() return params.get(name, { with_decryption = true }) end,
        function() return params.get(name .. ":blue", { with_decryption = true }) end,
        function() return params.get(name .. ":1") end,
        function() return params.history(name) end,
        function() return params.get_by_path(name:match("^(.*)/"), {}) end,
      }) do
        local err = h.raises("EINTEGRITY", read)
        assert.matches("altered", err.message, c[1])
      end
      tamper(c[2], name)
      assert.equal(2, params.get(name).version)
    end
    -- Legitimate changes keep the head valid.
    params.label(name, 2, "blue")
    params.unlabel(name, 2, { "green" })
    assert.is_true(params.value(name .. ":blue"):equals("typed-secure-2"))
  end)

  it("honours the time zone of an Expiration timestamp", function()
    local t = params._parse_time
    assert.equal(1700000000 * 1000000, t("2023-11-14T22:13:20Z"))
    assert.equal(1700000000 * 1000000, t("2023-11-14T22:13:20.000Z"))
    assert.equal(1700000000 * 1000000, t("2023-11-14T22:13:20"))
    assert.equal(1700000000 * 1000000, t("2023-11-15T00:13:20+02:00"))
    assert.equal(1700000000 * 1000000, t("2023-11-14T17:13:20-05:00"))
    assert.equal(1700000000 * 1000000, t("2023-11-14T17:13:20-0500"))
    for _, bad in ipairs({ "2023-11-14T22:13:20+2", "2023-13-14T22:13:20Z", "2023-11-14",
      "2023-11-14T22:13:20 Z", "2023-11-14T22:13:20+25:00" }) do
      assert.is_nil(t(bad), bad)
    end
    -- An expiry an hour ago written in a zone ahead of UTC: expired now.
    local name = fresh()
    local ahead = os.date("!%Y-%m-%dT%H:%M:%S", os.time() - 3600 + 5 * 3600) .. "+05:00"
    params.put(name, "zoned", { tier = "Advanced", policies = {
      { Type = "Expiration", Attributes = { Timestamp = ahead } } } })
    h.raises("ENOENT", params.get, name)
  end)

  describe("the latest-version read", function()
    local function flip_ct(name, version)
      local row = db.row("SELECT ct FROM param_versions WHERE name = ? AND version = ?", name,
        version)
      local ct = row.ct
      local i = #ct - 20
      db.exec("UPDATE param_versions SET ct = ? WHERE name = ? AND version = ?",
        db.blob(ct:sub(1, i - 1) .. string.char(ct:byte(i) ~ 1) .. ct:sub(i + 1)), name, version)
      return ct
    end

    it("checks the head and the value on every read, also after a good one", function()
      local name = fresh()
      params.put(name, "fast-secure-1", { type = "SecureString" })
      params.put(name, "fast-secure-2", { type = "SecureString", overwrite = true })
      for _ = 1, 3 do
        assert.is_true(params.get(name, { with_decryption = true }).value:equals("fast-secure-2"))
      end
      local good = db.row("SELECT head_mac FROM params WHERE name = ?", name).head_mac
      db.exec("UPDATE params SET head_mac = ? WHERE name = ?",
        db.blob(string.char(good:byte(1) ~ 1) .. good:sub(2)), name)
      h.raises("EINTEGRITY", params.get, name)
      db.exec("UPDATE params SET head_mac = ? WHERE name = ?", db.blob(good), name)
      assert.equal(2, params.get(name).version)
      -- A flipped ciphertext byte, after the same value was read (and masked) before.
      local ct = flip_ct(name, 2)
      local err = h.raises("EINTEGRITY", params.get, name, { with_decryption = true })
      assert.matches("version 2", err.message)
      -- Without decryption the value is not opened, so nothing is found wrong.
      assert.equal(2, params.get(name).version)
      db.exec("UPDATE param_versions SET ct = ? WHERE name = ? AND version = 2", db.blob(ct),
        name)
      -- Version 1's sealed value in version 2's row: bound to another version, it does not open.
      local v1 = db.row("SELECT ct FROM param_versions WHERE name = ? AND version = 1", name).ct
      db.exec("UPDATE param_versions SET ct = ? WHERE name = ? AND version = 2", db.blob(v1),
        name)
      h.raises("EINTEGRITY", params.get, name, { with_decryption = true })
      db.exec("UPDATE param_versions SET ct = ? WHERE name = ? AND version = 2", db.blob(ct),
        name)
      -- Another parameter's sealed value: bound to another name.
      local other = fresh()
      params.put(other, "other-secure-1", { type = "SecureString" })
      local oct = db.row("SELECT ct FROM param_versions WHERE name = ?", other).ct
      db.exec("UPDATE param_versions SET ct = ? WHERE name = ? AND version = 2", db.blob(oct),
        name)
      h.raises("EINTEGRITY", params.get, name, { with_decryption = true })
      db.exec("UPDATE param_versions SET ct = ? WHERE name = ? AND version = 2", db.blob(ct),
        name)
      assert.is_true(params.get(name, { with_decryption = true }).value:equals("fast-secure-2"))
    end)

    it("returns what the other paths return", function()
      local name = fresh()
      params.put(name, "fast-plain-1", { description = "d1" })
      params.put(name, "fast-plain-2", { overwrite = true })
      params.label(name, 2, { "zeta", "alpha", "mid" })
      local fast = params.get(name)
      local slow = params.get(name .. ":2")
      assert.same({ "alpha", "mid", "zeta" }, fast.labels)
      for _, k in ipairs({ "name", "type", "value", "version", "tier", "description",
        "last_modified" }) do
        assert.same(slow[k], fast[k], k)
      end
      assert.equal("d1", fast.description)
      h.raises("ENOENT", params.get, fresh())
    end)

    it("records every read, chained", function()
      local name = fresh()
      params.put(name, "audited-secure-1", { type = "SecureString" })
      params.put(name .. "s", "audited-plain-1")
      vault.audit_flush()
      local before = db.row("SELECT count(*) AS n FROM secret_audit WHERE name = ? AND op = 'read'",
        name).n
      for _ = 1, 25 do
        params.get(name, { with_decryption = true }).value:close()
        params.get(name) -- no value released: no read recorded
        params.get(name .. "s")
      end
      vault.audit_flush()
      local rows = db.rows("SELECT * FROM secret_audit WHERE name = ? AND op = 'read'", name)
      assert.equal(before + 25, #rows)
      assert.equal("1", rows[#rows].version)
      assert.equal(32, #rows[#rows].value_mac)
      assert.equal(25, db.row("SELECT count(*) AS n FROM secret_audit WHERE name = ? AND "
        .. "op = 'read'", name .. "s").n)
      assert.is_true(vault.audit_verify() >= 50)
    end)

    it("keeps keys readable only until the next tick", function()
      local name = fresh()
      params.put(name, "held-secure-1", { type = "SecureString" })
      require("tide").sleep(0.25) -- the put's keys are protected again by now
      local v = vault.unlock().v
      assert.equal(0, v:held())
      -- Each read is journaled before its value is returned, and keeps the data key readable
      -- for the reads after it; the tick ingests the journal and protects the keys again.
      local journal = vault.journal_path()
      params.get(name, { with_decryption = true }).value:close()
      local one = #h.read(journal)
      assert.is_true(one > 0)
      params.get(name, { with_decryption = true }).value:close()
      assert.equal(2 * one, #h.read(journal))
      assert.equal(0, v:pending())
      assert.is_true(v:held() >= 1)
      require("tide").sleep(0.3)
      assert.equal(0, v:held())
      assert.equal("", h.read(journal))
      assert.equal(2, db.row("SELECT count(*) AS n FROM secret_audit WHERE name = ? AND "
        .. "op = 'read'", name).n)
    end)

    it("keeps reading while the log table refuses inserts: the journal holds the records",
      function()
      local name = fresh()
      params.put(name, "journal-param-1", { type = "SecureString" })
      db.exec("CREATE TRIGGER no_param_audit BEFORE INSERT ON secret_audit BEGIN "
        .. "SELECT RAISE(ABORT, 'audit table full'); END")
      local ok = pcall(params.get, name, { with_decryption = true })
      -- A write records itself after the journal's records: it fails, and writes nothing.
      local wrote, err = pcall(params.put, name, "journal-param-2", { overwrite = true })
      db.exec("DROP TRIGGER no_param_audit")
      assert.is_true(ok)
      assert.is_false(wrote)
      assert.matches("audit table full", err.message)
      assert.equal(1, params.get(name).version)
      vault.audit_verify()
      assert.equal(1, db.row("SELECT count(*) AS n FROM secret_audit WHERE name = ? AND "
        .. "op = 'read'", name).n)
    end)

    it("masks a value read in another process than the one that stored it", function()
      local home = h.tmpdir()
      local function run(code)
        h.write(home .. "/s.lua", code)
        return h.sh("env -u TIDE_SECRET_KEY -u TIDE_SECRET_PASSPHRASE TIDE_HOME=" .. home .. " "
          .. h.tide .. " --plain " .. home .. "/s.lua 2>&1")
      end
      local out, rc = run('require("tide.params").put("/m/x", "fast-mask-value-1", '
        .. '{ type = "SecureString" })')
      assert.equal(0, rc, out)
      out, rc = run([[
        local v = require("tide.params").get("/m/x", { with_decryption = true }).value
        local r = require("tide.proc").run({ "echo", "got", v:reveal() })
        io.stdout:write(r.stdout)
      ]])
      assert.equal(0, rc, out)
      assert.matches("got %*%*%*", out)
      assert.is_nil(out:find("fast-mask-value-1", 1, true))
    end)
  end)

  it("works from the command line", function()
    local home = h.tmpdir()
    local function cli(args, stdin)
      return h.sh((stdin and ("printf '%s' '" .. stdin .. "' | ") or "") .. "TIDE_HOME=" .. home
        .. " " .. h.tide .. " " .. args .. " 2>&1")
    end
    assert.equal(0, select(2, cli("param put /app/prod/url https://a.example")))
    assert.equal(0, select(2, cli("param put /app/prod/url https://b.example --overwrite")))
    assert.equal("https://a.example\n", (cli("param get /app/prod/url:1")))
    assert.equal(0, select(2, cli("param label /app/prod/url --version 1 blue")))
    assert.equal("https://a.example\n", (cli("param get /app/prod/url:blue")))
    local out, rc = cli("param label /app/prod/url --version 9 green")
    assert.equal(2, rc)
    assert.equal("tide: parameter '/app/prod/url' has no version 9 to label\n", out)
    -- Labels are all checked first: one bad label and nothing is applied, nothing audited.
    local audits = #h.sh("TIDE_HOME=" .. home .. " " .. h.tide .. " audit ls 2>&1")
    out, rc = cli("param label /app/prod/url --version 1 good 1bad")
    assert.equal(2, rc)
    assert.equal(1, select(2, out:gsub("\n", "")), out)
    assert.matches("invalid labels: 1bad", out)
    assert.matches("no label 'good'", (cli("param get /app/prod/url:good")))
    assert.equal(0, select(2, cli("param label /app/prod/url --version 1 blue")))
    assert.equal(audits, #h.sh("TIDE_HOME=" .. home .. " " .. h.tide .. " audit ls 2>&1"))
    -- An existing SecureString never takes its value from argv, even without --type.
    assert.equal(0, select(2, cli("param put /app/prod/pw --type SecureString", "stored-pw-1\n")))
    out, rc = cli("param put /app/prod/pw argv-secret-2 --overwrite")
    assert.equal(2, rc)
    assert.matches("never taken from the command line", out)
    assert.equal("stored-pw-1\n", (cli("param get /app/prod/pw --with-decryption")))
    assert.matches("SecureString", (cli("param history /app/prod/pw")))
    -- Bad input: one line, exit 2; a missing parameter stays exit 1.
    for _, bad in ipairs({ "param put /" .. string.rep("a/", 16) .. "b v",
      "param put /app/big " .. string.rep("x", 4097),
      "param get /app/prod/url:7", "param get /app/prod/url:nolabel" }) do
      out, rc = cli(bad)
      assert.equal(2, rc, bad .. ": " .. out)
      assert.equal(1, select(2, out:gsub("\n", "")), out)
    end
    out, rc = cli("param get /app/nope")
    assert.equal(1, rc)
    assert.equal("tide: parameter '/app/nope' not found\n", out)
    out, rc = cli("param put /app/prod/key secret-on-argv --type SecureString")
    assert.equal(2, rc)
    assert.matches("never taken from the command line", out)
    assert.equal(0, select(2, cli("param put /app/prod/key --type SecureString", "cli-secure-1\n")))
    assert.equal("cli-secure-1\n", (cli("param get /app/prod/key --with-decryption")))
    out = cli("param ls --path /app --recursive")
    assert.matches("/app/prod/url  String  v2  https://b.example", out)
    assert.is_nil(out:find("cli-secure-1", 1, true))
    assert.matches("v1 .* blue", (cli("param history /app/prod/url")))
  end)
end)
