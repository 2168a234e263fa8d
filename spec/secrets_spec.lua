-- tide.secrets: staging labels, version ids, JSON keys, rotation, deletion windows, the key
-- hierarchy's refusals, tampering, the audit chain and rekey. Tests that need a store of their
-- own (a wrong key, a truncated database) run a separate tide process on a fresh home.
local h = require("spec.helper")
local db = require("tide.db")
local json = require("tide.json")
local proc = require("tide.proc")
local secrets = require("tide.secrets")
local vault = require("tide.vault")

local n = 0
local function fresh(prefix)
  n = n + 1
  return ("%s/%d-%d"):format(prefix or "t", n, math.random(1, 1e9))
end

local function flip(s, i)
  return s:sub(1, i - 1) .. string.char(s:byte(i) ~ 1) .. s:sub(i + 1)
end

-- Runs a Lua chunk in another tide on home; returns its combined output and exit code.
local function tide_in(home, code, env)
  local file = home .. "/script.lua"
  h.write(file, code)
  local vars = "env -u TIDE_SECRET_KEY -u TIDE_SECRET_PASSPHRASE TIDE_HOME=" .. home .. " "
  for k, v in pairs(env or {}) do
    vars = vars .. k .. "='" .. v .. "' "
  end
  return h.sh(vars .. h.tide .. " --plain " .. file .. " 2>&1")
end

describe("tide.secrets", function()
  it("moves AWSCURRENT and AWSPREVIOUS like PutSecretValue", function()
    local name = fresh("db")
    local v1 = secrets.put_value(name, "first-value-1").version_id
    local v2 = secrets.put_value(name, "second-value-2").version_id
    local cur = secrets.get_value(name)
    assert.equal(v2, cur.version_id)
    assert.same({ "AWSCURRENT" }, cur.stages)
    assert.is_true(cur.value:equals("second-value-2"))
    assert.equal("***", tostring(cur.value))
    assert.is_true(secrets.get(name, { stage = "AWSPREVIOUS" }):equals("first-value-1"))
    assert.is_true(secrets.get(name, { version_id = v1 }):equals("first-value-1"))
    local versions = secrets.list_versions(name)
    assert.equal(2, #versions)
    assert.same({ "AWSPREVIOUS" }, versions[1].stages)
  end)

  it("refuses a version id and a stage that name different versions", function()
    local name = fresh()
    local v1 = secrets.put_value(name, "value-one-1").version_id
    secrets.put_value(name, "value-two-2")
    h.raises("EINPUT", secrets.get_value, name, { version_id = v1, stage = "AWSCURRENT" })
    assert.is_true(secrets.get(name, { version_id = v1, stage = "AWSPREVIOUS" })
      :equals("value-one-1"))
    h.raises("EINPUT", secrets.get_value, name, { stage = "NOPE" })
    h.raises("EINPUT", secrets.get_value, name, { version_id = "x" })
  end)

  it("treats a repeated version id as idempotent, or a conflict with another value", function()
    local name = fresh()
    local id = secrets.new_version_id()
    secrets.put_value(name, "token-value-1", { version_id = id })
    secrets.put_value(name, "token-value-1", { version_id = id })
    assert.equal(1, #secrets.list_versions(name))
    h.raises("ECONFLICT", secrets.put_value, name, "token-value-2", { version_id = id })
    assert.equal(1, #secrets.list_versions(name))
  end)

  it("extracts a JSON key", function()
    local name = fresh()
    secrets.put_value(name, json.encode({ user = "admin", password = "pa55word-xyz", port = 5432 }))
    assert.is_true(secrets.get(name, { json_key = "password" }):equals("pa55word-xyz"))
    assert.is_true(secrets.get(name, { json_key = "port" }):equals("5432"))
    h.raises("EINPUT", secrets.get, name, { json_key = "nope" })
    local plain = fresh()
    secrets.put_value(plain, "not json at all")
    h.raises("EINPUT", secrets.get, plain, { json_key = "k" })
  end)

  it("keeps binary values and enforces the 64 KiB limit, changing nothing", function()
    local name = fresh()
    local bin = string.rep("\0\1\255", 100)
    secrets.put_value(name, bin, { binary = true })
    local got = secrets.get_value(name)
    assert.is_true(got.binary)
    assert.is_true(got.value:equals(bin))
    secrets.put_value(name, string.rep("x", 65536))
    h.raises("EINPUT", secrets.put_value, name, string.rep("x", 65537))
    assert.equal(2, #secrets.list_versions(name))
    h.raises("EINPUT", secrets.put_value, name, "")
  end)

  it("rejects invalid names and stages", function()
    for _, bad in ipairs({ "", "a b", "x#y", string.rep("a", 513) }) do
      h.raises("EINPUT", secrets.put_value, bad, "some-value-1")
    end
    h.raises("EINPUT", secrets.put_value, fresh(), "some-value-1", { stages = { "bad stage" } })
    assert.is_nil(db.row("SELECT 1 AS x FROM secrets WHERE name = 'a b'"))
  end)

  it("deletes with a recovery window, restores, and force-deletes", function()
    local name = fresh()
    secrets.put_value(name, "deleted-value-1")
    h.raises("EINPUT", secrets.delete, name, { recovery_days = 6 })
    h.raises("EINPUT", secrets.delete, name, { recovery_days = 7, force = true })
    local at = secrets.delete(name, { recovery_days = 7 })
    assert.is_true(math.abs(at - (os.time() + 7 * 86400)) < 60)
    h.raises("EINPUT", secrets.get_value, name)
    secrets.restore(name)
    assert.is_true(secrets.get(name):equals("deleted-value-1"))
    h.raises("EINPUT", secrets.restore, name)
    -- A window that has passed: the secret is purged on the next access.
    secrets.delete(name, { recovery_days = 7 })
    db.exec("UPDATE secrets SET purge_us = 1 WHERE name = ?", name)
    h.raises("ENOENT", secrets.get_value, name)
    secrets.delete(fresh(), { force = true }) -- missing: no error
    local forced = fresh()
    secrets.put_value(forced, "forced-value-1")
    secrets.delete(forced, { force = true })
    h.raises("ENOENT", secrets.get_value, forced)
  end)

  it("moves custom labels and refuses to remove AWSCURRENT", function()
    local name = fresh()
    local v1 = secrets.put_value(name, "label-value-1").version_id
    local v2 = secrets.put_value(name, "label-value-2").version_id
    secrets.update_stage(name, "blue", { move_to = v1 })
    assert.is_true(secrets.get(name, { stage = "blue" }):equals("label-value-1"))
    secrets.update_stage(name, "AWSCURRENT", { move_to = v1 })
    assert.is_true(secrets.get(name, { stage = "AWSPREVIOUS" }):equals("label-value-2"))
    h.raises("EINPUT", secrets.update_stage, name, "AWSCURRENT", { remove_from = v1 })
    h.raises("EINPUT", secrets.update_stage, name, "blue", { move_to = "missing-version" })
    assert.is_true(secrets.get(name, { stage = "blue" }):equals("label-value-1"))
    secrets.update_stage(name, "blue", { remove_from = v1 })
    h.raises("EINPUT", secrets.get, name, { stage = "blue" })
    assert.truthy(v2)
  end)

  describe("rotation", function()
    local function handler(log, fail_at)
      return function(step, ctx)
        log[#log + 1] = step
        if step == "createSecret" then
          if not pcall(ctx.secrets.get, ctx.secret_id, { version_id = ctx.token }) then
            ctx.secrets.put_value(ctx.secret_id, "rotated-" .. ctx.token:sub(1, 8),
              { version_id = ctx.token, stages = { "AWSPENDING" } })
          end
        elseif step == fail_at then
          error("cannot reach the database")
        end
      end
    end

    it("runs the four steps in order and moves the labels", function()
      local name = fresh()
      secrets.put_value(name, "before-rotation-1")
      local log = {}
      local token = secrets.rotate(name, { handler = handler(log) })
      assert.same({ "createSecret", "setSecret", "testSecret", "finishSecret" }, log)
      local cur = secrets.get_value(name)
      assert.equal(token, cur.version_id)
      assert.is_true(cur.value:equals("rotated-" .. token:sub(1, 8)))
      assert.is_true(secrets.get(name, { stage = "AWSPREVIOUS" }):equals("before-rotation-1"))
      h.raises("EINPUT", secrets.get, name, { stage = "AWSPENDING" })
    end)

    it("leaves AWSPENDING after a failed step and resumes with the same token", function()
      local name = fresh()
      secrets.put_value(name, "before-rotation-2")
      local log = {}
      local err = h.raises("EINPUT", secrets.rotate, name, { handler = handler(log, "testSecret") })
      assert.matches("failed at testSecret: .*cannot reach the database", err.message)
      assert.is_true(secrets.get(name):equals("before-rotation-2"))
      local pending = secrets.get_value(name, { stage = "AWSPENDING" }).version_id
      -- Another rotation with a different token is refused while this one is in progress.
      db.exec("UPDATE secrets SET rotation_token = 'other' WHERE name = ?", name)
      h.raises("ECONFLICT", secrets.rotate, name, { handler = handler({}) })
      db.exec("UPDATE secrets SET rotation_token = ? WHERE name = ?", pending, name)
      local token = secrets.rotate(name, { handler = handler({}) })
      assert.equal(pending, token)
      assert.equal(2, #secrets.list_versions(name))
    end)

    it("rotates on a schedule with a handler module", function()
      local name = fresh()
      secrets.put_value(name, "scheduled-value-1")
      package.preload["spec_rotator"] = function()
        return handler({})
      end
      h.raises("EINPUT", secrets.rotate, name, { handler = handler({}), every_days = 1 })
      secrets.rotate(name, { handler = "spec_rotator", every_days = 30 })
      local done = secrets.rotate_due()
      for _, d in ipairs(done) do
        assert.is_not.equal(name, d) -- just rotated: not due
      end
      db.exec("UPDATE secrets SET rotated_us = 1 WHERE name = ?", name)
      done = secrets.rotate_due()
      local found = false
      for _, d in ipairs(done) do
        found = found or d == name
      end
      assert.is_true(found)
      assert.equal(3, #secrets.list_versions(name))
    end)
  end)

  describe("tampering", function()
    it("fails with an integrity error on a flipped ciphertext byte, changing nothing", function()
      local name = fresh()
      secrets.put_value(name, "tamper-value-1")
      local row = db.row("SELECT ct FROM secret_versions WHERE name = ?", name)
      for _, i in ipairs({ 1, 2, 20, 26, #row.ct - 1, #row.ct }) do
        db.exec("UPDATE secret_versions SET ct = ? WHERE name = ?", db.blob(flip(row.ct, i)), name)
        h.raises("EINTEGRITY", secrets.get_value, name)
      end
      db.exec("UPDATE secret_versions SET ct = ? WHERE name = ?", db.blob(row.ct:sub(1, 30)), name)
      h.raises("EINTEGRITY", secrets.get_value, name)
      db.exec("UPDATE secret_versions SET ct = ? WHERE name = ?", db.blob(row.ct), name)
      assert.is_true(secrets.get(name):equals("tamper-value-1"))
    end)

    it("refuses a ciphertext moved to another name, version or key id", function()
      local a, b = fresh(), fresh()
      secrets.put_value(a, "value-of-a-1")
      secrets.put_value(b, "value-of-b-1")
      secrets.put_value(b, "value-of-b-2")
      local ra = db.row("SELECT ct FROM secret_versions WHERE name = ? AND seq = 1", a)
      local rb1 = db.row("SELECT ct, key_id FROM secret_versions WHERE name = ? AND seq = 1", b)
      db.exec("UPDATE secret_versions SET ct = ? WHERE name = ? AND seq = 1", db.blob(ra.ct), b)
      h.raises("EINTEGRITY", secrets.get, b, { stage = "AWSPREVIOUS" })
      db.exec("UPDATE secret_versions SET ct = ? WHERE name = ? AND seq = 2", db.blob(rb1.ct), b)
      h.raises("EINTEGRITY", secrets.get, b)
      db.exec("UPDATE secret_versions SET ct = ?, key_id = 2 WHERE name = ? AND seq = 1",
        db.blob(rb1.ct), b)
      h.raises("ECRYPTO", secrets.get, b, { stage = "AWSPREVIOUS" })
    end)

    it("detects swapped version ids, a flipped binary flag and a cleared deletion", function()
      local name = fresh()
      local a = secrets.put_value(name, "swap-value-1").version_id
      local b = secrets.put_value(name, "swap-value-2").version_id
      local function swap(x, y)
        db.exec("UPDATE secret_versions SET version_id = 'tmp' WHERE name = ? AND seq = 1", name)
        db.exec("UPDATE secret_versions SET version_id = ? WHERE name = ? AND seq = 2", x, name)
        db.exec("UPDATE secret_versions SET version_id = ? WHERE name = ? AND seq = 1", y, name)
      end
      swap(a, b)
      h.raises("EINTEGRITY", secrets.get_value, name, { version_id = a })
      h.raises("EINTEGRITY", secrets.get_value, name)
      swap(b, a)
      assert.is_true(secrets.get(name, { version_id = a }):equals("swap-value-1"))
      db.exec("UPDATE secret_versions SET binary = 1 WHERE name = ? AND seq = 2", name)
      h.raises("EINTEGRITY", secrets.get_value, name)
      db.exec("UPDATE secret_versions SET binary = 0 WHERE name = ? AND seq = 2", name)
      secrets.delete(name, { recovery_days = 7 })
      local purge = db.row("SELECT purge_us FROM secrets WHERE name = ?", name).purge_us
      db.exec("UPDATE secrets SET purge_us = NULL WHERE name = ?", name)
      h.raises("EINTEGRITY", secrets.get_value, name)
      db.exec("UPDATE secrets SET purge_us = ? WHERE name = ?", purge + 86400e6, name)
      h.raises("EINTEGRITY", secrets.restore, name)
      db.exec("UPDATE secrets SET purge_us = ? WHERE name = ?", purge, name)
      secrets.restore(name)
      assert.is_true(secrets.get(name):equals("swap-value-2"))
    end)

    it("detects a stage pointer rolled back to an older version", function()
      local name = fresh()
      secrets.put_value(name, "rollback-value-1")
      secrets.put_value(name, "rollback-value-2")
      db.exec("UPDATE secret_stages SET seq = 1 WHERE name = ? AND stage = 'AWSCURRENT'", name)
      h.raises("EINTEGRITY", secrets.get_value, name)
      db.exec("UPDATE secret_stages SET seq = 2 WHERE name = ? AND stage = 'AWSCURRENT'", name)
      assert.is_true(secrets.get(name):equals("rollback-value-2"))
    end)

    it("keeps the other values when one data key's wrapping is tampered with", function()
      local st = vault.unlock()
      local id = db.row("SELECT id FROM secret_keys WHERE state = 'active'").id
      local w = db.row("SELECT wrapped FROM secret_keys WHERE id = ?", id).wrapped
      local ok, err = pcall(function()
        db.exec("UPDATE secret_keys SET wrapped = ? WHERE id = ?", db.blob(flip(w, 30)), id)
        st.deks[id]:close()
        st.deks[id] = nil
        local name = fresh()
        h.raises("EINTEGRITY", secrets.put_value, name, "cannot-be-sealed")
        assert.is_nil(db.row("SELECT 1 AS x FROM secrets WHERE name = ?", name))
      end)
      db.exec("UPDATE secret_keys SET wrapped = ? WHERE id = ?", db.blob(w), id)
      assert(ok, err)
    end)
  end)

  describe("the audit log", function()
    it("records every operation with a MAC, never the value, and detects edits", function()
      local name = fresh()
      secrets.put_value(name, "audited-value-1")
      secrets.get(name)
      vault.audit_flush() -- reads are written in batches
      local rows = db.rows("SELECT * FROM secret_audit WHERE name = ? ORDER BY seq", name)
      assert.equal("write", rows[1].op)
      assert.equal("read", rows[2].op)
      for _, r in ipairs(rows) do
        assert.equal(32, #r.value_mac)
        assert.is_nil(r.value_mac:find("audited", 1, true))
      end
      assert.is_true(vault.audit_verify() >= 2)
      local seq = rows[2].seq
      db.exec("UPDATE secret_audit SET op = 'write' WHERE seq = ?", seq)
      h.raises("EINTEGRITY", vault.audit_verify)
      db.exec("UPDATE secret_audit SET op = 'read' WHERE seq = ?", seq)
      vault.audit_verify()
      -- The last record removed: the head no longer matches.
      local saved = db.row("SELECT * FROM secret_audit WHERE seq = ?", seq)
      db.exec("DELETE FROM secret_audit WHERE seq = ?", seq)
      local err = h.raises("EINTEGRITY", vault.audit_verify)
      assert.matches("records after " .. (seq - 1) .. " were removed", err.message)
      db.exec("INSERT INTO secret_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", saved.seq,
        saved.ts_us, saved.run_id, saved.step, saved.op, saved.kind, saved.name, saved.version,
        saved.outcome, db.blob(saved.value_mac), db.blob(saved.chain))
      vault.audit_verify()
      -- The end of the log cut together with its head pin.
      local pin = db.row("SELECT v FROM secret_meta WHERE k = 'audit_head'").v
      db.exec("DELETE FROM secret_meta WHERE k = 'audit_head'")
      err = h.raises("EINTEGRITY", vault.audit_verify)
      assert.matches("head pin is missing", err.message)
      db.exec("INSERT INTO secret_meta (k, v) VALUES ('audit_head', ?)", db.blob(pin))
      vault.audit_verify()
      -- A record in the middle removed.
      saved = db.row("SELECT * FROM secret_audit WHERE seq = ?", rows[1].seq)
      db.exec("DELETE FROM secret_audit WHERE seq = ?", rows[1].seq)
      err = h.raises("EINTEGRITY", vault.audit_verify)
      assert.matches("record " .. rows[1].seq .. " is missing", err.message)
      db.exec("INSERT INTO secret_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", saved.seq,
        saved.ts_us, saved.run_id, saved.step, saved.op, saved.kind, saved.name, saved.version,
        saved.outcome, db.blob(saved.value_mac), db.blob(saved.chain))
      vault.audit_verify()
    end)

    it("denies a read when its journal record cannot be written, releasing nothing", function()
      local home = h.tmpdir()
      local out, rc = tide_in(home, [[
        require("tide.secrets").put_value("j", "journal-denied-1")
        require("tide.params").put("/j/p", "journal-denied-2", {type = "SecureString"})
        require("tide.params").put("/j/s", "journal-denied-3")
      ]])
      assert.equal(0, rc, out)
      -- We run as root: a mode does not stop a write. A directory in its place does.
      assert.equal(0, select(2, h.sh("rm -f " .. home .. "/audit.journal && mkdir " .. home
        .. "/audit.journal")))
      for _, code in ipairs({ 'print(require("tide.secrets").get("j"):reveal())',
        'print(require("tide.params").value("/j/p"):reveal())',
        'print(require("tide.params").value("/j/s"))' }) do
        out, rc = tide_in(home, code)
        assert.equal(1, rc, out)
        assert.is_nil(out:find("journal-denied", 1, true))
        assert.matches("nothing is released", out)
      end
      h.sh("rmdir " .. home .. "/audit.journal")
      out, rc = tide_in(home, 'print(require("tide.params").value("/j/s"))')
      assert.equal(0, rc, out)
      assert.matches("journal%-denied%-3", out)
    end)

    it("cuts a short journal write off again and denies that read (a full disk)", function()
      local home = h.tmpdir()
      local out, rc = tide_in(home, 'require("tide.params").put("/f/p", "fsize-denied-1", '
        .. '{type = "SecureString"})')
      assert.equal(0, rc, out)
      -- A journal on a tmpfs with one free page, bind-mounted over the real one.
      local mnt = home .. "/mnt"
      local _, mrc = h.sh("mkdir " .. mnt .. " && mount -t tmpfs -o size=8k tmpfs " .. mnt
        .. " 2>/dev/null && head -c 4096 /dev/zero > " .. mnt .. "/filler && touch " .. mnt
        .. "/j && mount --bind " .. mnt .. "/j " .. home .. "/audit.journal")
      if mrc ~= 0 then
        h.sh("umount " .. mnt .. " 2>/dev/null")
        return pending("needs mount (root with CAP_SYS_ADMIN)")
      end
      out, rc = tide_in(home, [[
        local params = require("tide.params")
        local n, err = 0, nil
        for _ = 1, 200 do
          local ok, v = pcall(params.value, "/f/p")
          if not ok then err = v break end
          v:close()
          n = n + 1
        end
        print(n, err and err.code, err and err.message)
        print(#io.open(require("tide.vault").journal_path(), "rb"):read("a") % n)
      ]])
      local after = tide_in(home, [[
        local vault = require("tide.vault")
        vault.audit_verify()
        local reads = 0
        for _, r in ipairs(vault.audit_list(1000)) do
          if r.op == "read" then reads = reads + 1 end
        end
        print("reads", reads)
      ]])
      h.sh("umount " .. home .. "/audit.journal; umount " .. mnt)
      assert.equal(0, rc, out)
      local reads = tonumber(out:match("^(%d+)\tEINTEGRITY\t[^\n]*short write\n0\n"))
      assert.truthy(reads, out)
      assert.matches("reads\t" .. reads .. "\n", after)
    end)

    it("keeps every read that was released when the process is killed", function()
      local home = h.tmpdir()
      local out, rc = tide_in(home, [[
        require("tide.secrets").put_value("k", "killed-value-1")
        require("tide.params").put("/k/p", "killed-value-2", {type = "SecureString"})
      ]])
      assert.equal(0, rc, out)
      out = tide_in(home, [[
        local s, p = require("tide.secrets"), require("tide.params")
        for _ = 1, 7 do s.get("k"):close() end
        for _ = 1, 5 do p.value("/k/p"):close() end
        io.stdout:write("read\n")
        io.stdout:flush()
        require("tide.proc").run({ "sh", "-c", "kill -9 $PPID" })
        print("not reached")
      ]])
      assert.matches("read\n", out)
      assert.is_nil(out:find("not reached", 1, true))
      out, rc = tide_in(home, [[
        local vault = require("tide.vault")
        vault.audit_verify()
        local n = {}
        for _, r in ipairs(vault.audit_list(1000)) do
          if r.op == "read" then n[r.kind] = (n[r.kind] or 0) + 1 end
        end
        print(n.secret, n.param)
      ]])
      assert.equal(0, rc, out)
      assert.matches("^7\t5\n", out)
      out, rc = h.sh("TIDE_HOME=" .. home .. " " .. h.tide .. " audit ls 2>&1")
      assert.equal(0, rc, out)
    end)

    it("checks journal records before ingesting them", function()
      local home = h.tmpdir()
      local out, rc = tide_in(home, [[
        require("tide.params").put("/t/p", "tampered-journal-1")
      ]])
      assert.equal(0, rc, out)
      -- A journal left by a tide that died: one record, then a byte of it flipped.
      out = tide_in(home, [[
        require("tide.params").value("/t/p")
        require("tide.proc").run({ "sh", "-c", "kill -9 $PPID" })
      ]])
      local j = h.read(home .. "/audit.journal")
      assert.is_true(#j > 40, out)
      h.write(home .. "/audit.journal", flip(j, 40))
      out, rc = h.sh("TIDE_HOME=" .. home .. " " .. h.tide .. " audit verify 2>&1")
      assert.equal(1, rc)
      assert.matches("audit journal .* was altered", out)
      -- Bytes that are not a journal at all.
      h.write(home .. "/audit.journal", string.rep("garbage\n", 10) .. j)
      out, rc = h.sh("TIDE_HOME=" .. home .. " " .. h.tide .. " audit verify 2>&1")
      assert.equal(1, rc)
      assert.matches("not a journal record", out)
      -- A frame cut short at the end (an append that died with its process) is left out.
      h.write(home .. "/audit.journal", j .. j:sub(1, 30))
      out, rc = h.sh("TIDE_HOME=" .. home .. " " .. h.tide .. " audit verify 2>&1")
      assert.equal(0, rc, out)
      assert.equal("", h.read(home .. "/audit.journal"))
      out = h.sh("TIDE_HOME=" .. home .. " " .. h.tide .. " audit ls 2>&1")
      assert.equal(1, select(2, out:gsub("read%s+param", "")), out)
    end)
  end)

  describe("the secret value", function()
    it("never turns into a string by accident", function()
      local name = fresh()
      secrets.put_value(name, "opaque-value-1")
      local v = secrets.get(name)
      assert.equal("***", tostring(v))
      assert.equal(14, #v)
      assert.has_error(function()
        return "x" .. v
      end)
      assert.has_error(function()
        return json.encode({ v })
      end)
      assert.equal("opaque-value-1", v:reveal())
      v:close()
      assert.has_error(function()
        return v:reveal()
      end)
    end)

    it("reaches a child through its environment and a file, never argv", function()
      local name = fresh()
      secrets.put_value(name, "env-passed-value")
      local v = secrets.get(name)
      -- The child's output is masked, so what it saw goes to files (a file read is not masked):
      -- its environment holds the value, its command line does not.
      local dir = h.tmpdir()
      local r = proc.run({ "sh", "-c", 'printf %s "$PW" > "$OUT/env"; '
        .. 'tr "\\0" " " < /proc/$$/cmdline > "$OUT/cmdline"', env = { PW = v, OUT = dir } })
      assert.equal(0, r.code, r.stderr)
      assert.equal("env-passed-value", h.read(dir .. "/env"))
      local cmdline = h.read(dir .. "/cmdline")
      assert.matches("printf", cmdline)
      assert.is_nil(cmdline:find("env-passed-value", 1, true))
      os.remove(dir .. "/env")
      assert.is_true(v:write_file(dir .. "/pw"))
      assert.equal("env-passed-value", h.read(dir .. "/pw"))
      assert.equal("600", h.sh("stat -c %a " .. dir .. "/pw"):match("%d+"))
      assert.is_nil(v:write_file(dir .. "/pw")) -- never overwrites
    end)

    it("keeps the host's memory out of core files", function()
      local f = io.open("/proc/self/limits")
      local limits = f:read("a")
      f:close()
      assert.equal("0", limits:match("Max core file size%s+(%d+)"))
    end)
  end)

  describe("keys", function()
    it("creates the key file 0600 on first use and refuses a wrong or missing key", function()
      local home = h.tmpdir()
      local put = 'require("tide.secrets").put_value("k", "key-test-value") print("ok")'
      local get = 'print(require("tide.secrets").get("k"):equals("key-test-value"))'
      local out, rc = tide_in(home, put)
      assert.equal(0, rc, out)
      assert.equal("600", h.sh("stat -c %a " .. home .. "/secret.key"):match("%d+"))
      local key = h.read(home .. "/secret.key")
      assert.equal(32, #key)
      -- Wrong key: a clear error, nothing changed.
      h.write(home .. "/secret.key", string.rep("k", 32))
      out, rc = tide_in(home, put)
      assert.equal(1, rc)
      assert.matches("wrong master key", out)
      -- Missing key for an existing store: an error, not a new key.
      os.remove(home .. "/secret.key")
      out, rc = tide_in(home, get)
      assert.equal(1, rc)
      assert.matches("cannot read the master key", out)
      assert.is_nil(h.read(home .. "/secret.key"))
      local f = io.open(home .. "/secret.key", "wb")
      f:write(key)
      f:close()
      h.sh("chmod 600 " .. home .. "/secret.key")
      out, rc = tide_in(home, get)
      assert.equal(0, rc, out)
      assert.matches("true", out)
    end)

    it("takes the key from the environment and unsets it before any child", function()
      local home = h.tmpdir()
      local key = string.rep("ab", 32)
      local code = [[
        local s = require("tide.secrets")
        s.put_value("e", "env-key-value-1")
        assert(os.getenv("TIDE_SECRET_KEY") == nil)
        local r = require("tide.proc").run({"sh", "-c", "echo ${TIDE_SECRET_KEY:-unset}"})
        print(r.stdout, s.get("e"):reveal())
      ]]
      local out, rc = tide_in(home, code, { TIDE_SECRET_KEY = key })
      assert.equal(0, rc, out)
      assert.matches("unset", out)
      assert.is_nil(h.read(home .. "/secret.key"))
      out, rc = tide_in(home, code, { TIDE_SECRET_KEY = string.rep("cd", 32) })
      assert.equal(1, rc)
      assert.matches("wrong master key", out)
      out, rc = tide_in(home, code)
      assert.equal(1, rc)
      assert.matches("set TIDE_SECRET_KEY", out)
      out, rc = tide_in(home, code, { TIDE_SECRET_KEY = "short" })
      assert.equal(1, rc)
      assert.matches("64 hex digits", out)
    end)

    it("takes the key variables out of the environment before any script runs", function()
      local home = h.tmpdir()
      local key, new_key = string.rep("ef", 32), string.rep("12", 32)
      -- The first thing the script does is start a process: the store is not touched yet.
      local code = [[
        local r = require("tide.proc").run({ "env" })
        local self = io.open("/proc/self/environ", "rb")
        local environ = self:read("a")
        self:close()
        local leaked = {}
        for _, var in ipairs({ "TIDE_SECRET_KEY", "TIDE_SECRET_PASSPHRASE", "TIDE_SECRET_NEW_KEY",
          "TIDE_SECRET_NEW_PASSPHRASE" }) do
          if r.stdout:find(var, 1, true) or os.getenv(var) then
            leaked[#leaked + 1] = var
          end
        end
        -- The names stay in the process's initial environment block; the values are wiped.
        for _, value in ipairs({ "]] .. key .. [[", "]] .. new_key .. [[", "horse-battery" }) do
          if r.stdout:find(value, 1, true) or environ:find(value, 1, true) then
            leaked[#leaked + 1] = value
          end
        end
        io.stdout:write("leaked: ", table.concat(leaked, ","), "\n")
        local s = require("tide.secrets")
        if ... == "put" then
          s.put_value("early", "early-env-value-1")
        end
        io.stdout:write("value: ", tostring(s.get("early"):reveal() == "early-env-value-1"), "\n")
      ]]
      local env = { TIDE_SECRET_KEY = key, TIDE_SECRET_PASSPHRASE = "horse-battery",
        TIDE_SECRET_NEW_KEY = new_key, TIDE_SECRET_NEW_PASSPHRASE = "horse-battery-2" }
      h.write(home .. "/early.lua", code)
      local function run(arg, vars)
        local cmd = "env -u TIDE_SECRET_KEY -u TIDE_SECRET_PASSPHRASE TIDE_HOME=" .. home .. " "
        for k, v in pairs(vars) do
          cmd = cmd .. k .. "='" .. v .. "' "
        end
        return h.sh(cmd .. h.tide .. " --plain " .. home .. "/early.lua " .. arg .. " 2>&1")
      end
      local out, rc = run("put", env)
      assert.equal(0, rc, out)
      assert.matches("leaked: \n", out)
      assert.matches("value: true", out)
      assert.is_nil(h.read(home .. "/secret.key"))
      -- The store unlocks again with the key given that way, and only with it.
      out, rc = run("get", { TIDE_SECRET_KEY = key })
      assert.equal(0, rc, out)
      assert.matches("value: true", out)
      out, rc = run("get", { TIDE_SECRET_KEY = new_key })
      assert.equal(1, rc, out)
      assert.matches("wrong master key", out)
    end)

    it("derives the key from a passphrase and refuses weakened parameters", function()
      local home = h.tmpdir()
      local code = 'require("tide.secrets").put_value("p", "pass-key-value-1") print("stored")'
      local out, rc = tide_in(home, code, { TIDE_SECRET_PASSPHRASE = "correct horse" })
      assert.equal(0, rc, out)
      out, rc = tide_in(home, code, { TIDE_SECRET_PASSPHRASE = "wrong horse" })
      assert.equal(1, rc)
      assert.matches("wrong master key", out)
      h.sh("sqlite3 " .. home .. "/state.db \"UPDATE secret_meta SET v = '1' "
        .. "WHERE k = 'kdf_ops'\"")
      out, rc = tide_in(home, code, { TIDE_SECRET_PASSPHRASE = "correct horse" })
      assert.equal(1, rc)
      assert.matches("below the minimum", out)
    end)

    it("reports a truncated database and changes nothing", function()
      local home = h.tmpdir()
      local out, rc = tide_in(home, 'require("tide.secrets").put_value("t", "trunc-value-1")')
      assert.equal(0, rc, out)
      local dbf = home .. "/state.db"
      local size = #h.read(dbf)
      h.sh("truncate -s " .. (size // 2) .. " " .. dbf)
      out, rc = tide_in(home, 'print(require("tide.secrets").get("t"):reveal())')
      assert.is_not.equal(0, rc)
      assert.is_nil(out:find("trunc-value-1", 1, true))
      assert.matches("corrupt", out:lower())
    end)

    it("upgrades the head MACs of a store written before head format 2, checking them", function()
      local home = h.tmpdir()
      local out, rc = tide_in(home, [[
        local db, vault = require("tide.db"), require("tide.vault")
        require("tide.secrets").put_value("old", "old-format-value-1")
        require("tide.params").put("/old/p", "old-format-param", {type = "SecureString"})
        -- What a store of head format 1 holds: MACs over the version and the stage pointers.
        db.exec("UPDATE params SET head_mac = ? WHERE name = '/old/p'",
          db.blob(vault.head_mac("param", "/old/p", "1")))
        local seq = db.row("SELECT seq FROM secret_stages WHERE name = 'old'").seq
        db.exec("UPDATE secrets SET head_mac = ? WHERE name = 'old'",
          db.blob(vault.head_mac("secret", "old", "2;AWSCURRENT=" .. seq)))
        db.exec("DELETE FROM secret_meta WHERE k = 'head_format'")
      ]])
      assert.equal(0, rc, out)
      local read = [[
        print(require("tide.secrets").get("old"):equals("old-format-value-1"),
          require("tide.params").value("/old/p"):equals("old-format-param"),
          require("tide.db").row("SELECT v FROM secret_meta WHERE k = 'head_format'").v)
      ]]
      local dbf = home .. "/state.db"
      h.sh("cp " .. dbf .. " " .. home .. "/v1.db")
      out, rc = tide_in(home, read)
      assert.equal(0, rc, out)
      assert.matches("true\ttrue\t2", out)
      -- A format 1 head that does not check is not blessed by the upgrade.
      h.sh("rm -f " .. dbf .. "-wal " .. dbf .. "-shm; cp " .. home .. "/v1.db " .. dbf
        .. "; sqlite3 " .. dbf .. " \"UPDATE params SET version = 2\"")
      out, rc = tide_in(home, read)
      assert.equal(1, rc, out)
      assert.matches("altered", out)
    end)

    it("rekeys: every value re-sealed, the old key no longer opens anything", function()
      local home = h.tmpdir()
      local out, rc = tide_in(home, [[
        require("tide.secrets").put_value("r", "rekey-value-1")
        require("tide.params").put("/r/p", "rekey-param-1", {type = "SecureString"})
      ]])
      assert.equal(0, rc, out)
      local old = h.read(home .. "/secret.key")
      out, rc = h.sh("TIDE_HOME=" .. home .. " " .. h.tide .. " store rekey 2>&1")
      assert.equal(0, rc, out)
      assert.matches("2 values", out)
      assert.is_not.equal(old, h.read(home .. "/secret.key"))
      out, rc = tide_in(home, [[
        print(require("tide.secrets").get("r"):equals("rekey-value-1"),
          require("tide.params").value("/r/p"):equals("rekey-param-1"))
        assert(require("tide.vault").audit_verify() > 0)
      ]])
      assert.equal(0, rc, out)
      assert.matches("true\ttrue", out)
      h.write(home .. "/old.key", old)
      h.sh("chmod 600 " .. home .. "/old.key")
      out, rc = tide_in(home, 'print(require("tide.secrets").get("r"):reveal())',
        { TIDE_SECRET_KEY_FILE = home .. "/old.key" })
      assert.equal(1, rc)
      assert.matches("wrong master key", out)
      -- A rekey killed after its commit, before the new key file was moved into place.
      local new = h.read(home .. "/secret.key")
      os.rename(home .. "/secret.key", home .. "/secret.key.new")
      h.write(home .. "/secret.key", old)
      h.sh("chmod 600 " .. home .. "/secret.key")
      out, rc = tide_in(home, 'print(require("tide.secrets").get("r"):equals("rekey-value-1"))')
      assert.equal(0, rc, out)
      assert.matches("true", out)
      assert.equal(new, h.read(home .. "/secret.key"))
      assert.is_nil(h.read(home .. "/secret.key.new"))
    end)
  end)

  it("keeps versions monotonic when two processes write the same secret", function()
    local home = h.tmpdir()
    local out, rc = tide_in(home, 'require("tide.secrets").put_value("c", "concurrent-000")')
    assert.equal(0, rc, out)
    h.write(home .. "/w.lua", [[
      local s = require("tide.secrets")
      for i = 1, 20 do s.put_value("c", ("concurrent-%s-%02d"):format(arg[1], i)) end
    ]])
    local cmd = "TIDE_HOME=" .. home .. " " .. h.tide .. " --plain " .. home .. "/w.lua"
    out, rc = h.sh("(" .. cmd .. " a & " .. cmd .. " b & wait) 2>&1; " .. cmd .. " c 2>&1")
    assert.equal(0, rc, out)
    out, rc = tide_in(home, [[
      local db = require("tide.db")
      require("tide.vault").unlock()
      local rows = db.rows("SELECT seq FROM secret_versions WHERE name = 'c' ORDER BY seq")
      print(#rows, rows[1].seq, rows[#rows].seq)
      print(require("tide.secrets").get("c"):equals("concurrent-c-20"))
    ]])
    assert.equal(0, rc, out)
    assert.matches("^61\t1\t61\ntrue\n", out)
  end)

  describe("the command line", function()
    local function cli(home, args, stdin)
      return h.sh((stdin and ("printf '%s' '" .. stdin .. "' | ") or "") .. "TIDE_HOME=" .. home
        .. " " .. h.tide .. " " .. args .. " 2>&1")
    end

    it("puts from stdin or a file, never argv, and gets by stage", function()
      local home = h.tmpdir()
      local out, rc = cli(home, "secret put prod/db", "cli-value-one\n")
      assert.equal(0, rc, out)
      h.write(home .. "/pw.txt", "cli-value-two\n")
      out, rc = cli(home, "secret put prod/db --from-file " .. home .. "/pw.txt")
      assert.equal(0, rc, out)
      assert.equal("cli-value-two\n", (cli(home, "secret get prod/db")))
      assert.equal("cli-value-one\n", (cli(home, "secret get prod/db --stage AWSPREVIOUS")))
      out, rc = cli(home, "secret put prod/db cli-value-three")
      assert.equal(2, rc)
      assert.matches("never taken from the command line", out)
      out, rc = cli(home, "secret get nope")
      assert.equal(1, rc)
      assert.equal("tide: secret 'nope' not found\n", out)
      out, rc = cli(home, "secret rm prod/db --recovery-days 3")
      assert.equal(2, rc)
      assert.matches("7 to 30", out)
      assert.equal(0, select(2, cli(home, "secret rm prod/db --recovery-days 7")))
      assert.equal(0, select(2, cli(home, "secret restore prod/db")))
      assert.matches("AWSPREVIOUS", (cli(home, "secret versions prod/db")))
      assert.matches("intact", (cli(home, "audit verify")))
    end)

    it("reports bad input and corrupt settings in one line", function()
      local home = h.tmpdir()
      assert.equal(0, select(2, cli(home, "secret put one/s", "one-line-value-1\n")))
      local function one_line(args, want_rc, pattern)
        local out, rc = cli(home, args)
        assert.equal(want_rc, rc, args .. ": " .. out)
        assert.equal(1, select(2, out:gsub("\n", "")), out)
        assert.matches(pattern, out)
      end
      one_line("secret rotate one/s --handler nosuchmod", 2, "nosuchmod")
      one_line("secret get one/s --version-id " .. string.rep("a", 32), 2, "no version")
      one_line("secret get one/s --stage NOPE", 2, "NOPE")
      one_line("secret get one/nope", 1, "not found")
      h.write(home .. "/big", string.rep("x", 65537))
      one_line("secret put one/big --from-file " .. home .. "/big", 2, "65536")
      -- A passphrase store whose key derivation settings were corrupted.
      local phome = h.tmpdir()
      local out, rc = tide_in(phome, 'require("tide.secrets").put_value("p", "kdf-value-1")',
        { TIDE_SECRET_PASSPHRASE = "correct horse" })
      assert.equal(0, rc, out)
      h.sh("sqlite3 " .. phome .. "/state.db \"UPDATE secret_meta SET v = 'lots' "
        .. "WHERE k = 'kdf_mem'\"")
      out, rc = h.sh("TIDE_SECRET_PASSPHRASE='correct horse' TIDE_HOME=" .. phome .. " "
        .. h.tide .. " secret get p 2>&1")
      assert.equal(1, rc)
      assert.equal("tide: the secret store's key derivation parameters (kdf_salt, kdf_ops, "
        .. "kdf_mem in secret_meta) are corrupt\n", out)
    end)
  end)
end)
