-- tide.artifact and `tide artifact`: trees restored exactly, files, refs and latest, version order,
-- the status model, immutability, asset and name rules, a wrong sha256, corruption on disk,
-- gc, retention, upstreams (same store and another store), two writers at once, a tide killed
-- with SIGKILL mid-put, a full disk (a small tmpfs, when mounting is allowed) and a write limit
-- (RLIMIT_FSIZE) mid-put.
local artifact = require("tide.artifact")
local helper = require("helper")

local function sh(cmd)
  local out, rc = helper.sh(cmd)
  assert.are.equal(0, rc, out)
  return out
end

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Runs the tide CLI with its own home; returns output (stdout and stderr) and exit code.
local function cli(home, args)
  return helper.sh(q(helper.tide) .. " --home " .. q(home) .. " artifact " .. args .. " 2>&1")
end

-- Runs the CLI and expects success; returns its output.
local function cli_ok(home, args)
  local out, rc = cli(home, args)
  assert.are.equal(0, rc, out)
  return out
end

local function blob_path(home, sha)
  return ("%s/artifacts/blobs/%s/%s"):format(home, sha:sub(1, 2), sha)
end

local function corrupt(path)
  sh("chmod u+w " .. q(path) .. " && printf X | dd of=" .. q(path)
    .. " bs=1 count=1 conv=notrunc 2>/dev/null")
end

local function count(dir)
  return tonumber((sh("find " .. q(dir) .. " -type f | wc -l"):match("%d+")))
end

describe("tide.artifact", function()
  local dir, n = nil, 0
  local run = ("%x"):format(math.floor(require("tide").now() * 1e6))

  -- A package name no other test and no earlier run uses (the spec's own store persists).
  local function pkg()
    n = n + 1
    return "pkg" .. run .. "-" .. n
  end

  before_each(function()
    dir = helper.tmpdir()
  end)

  after_each(function()
    sh("chmod -R u+rwx " .. q(dir) .. " && rm -rf " .. q(dir))
  end)

  local function tree(root)
    sh(("mkdir -p %s/bin %s/share/empty && printf 'run' > %s/bin/tool && chmod 751 %s/bin/tool"
      .. " && printf 'data' > %s/share/data && chmod 600 %s/share/data"
      .. " && ln -s ../../../etc/passwd %s/share/escape && ln -s bin/tool %s/tool"
      .. " && chmod 700 %s/share/empty"):format(root, root, root, root, root, root, root, root,
      root))
  end

  describe("put_dir and get", function()
    it("restores the exact tree: modes, links kept as links, empty directories", function()
      tree(dir .. "/src")
      local p = pkg()
      local v = artifact.put_dir(dir .. "/src", { package = p, version = "1.0.0" })
      assert.are.equal("main", v.repo)
      assert.are.equal("", v.namespace)
      assert.are.equal(p, v.package)
      assert.are.equal("1.0.0", v.version)
      assert.are.equal("Published", v.status)
      assert.are.equal(2, v.files)
      assert.are.equal(7, v.size)
      assert.matches("^%x+$", v.sha256)
      assert.are.equal(64, #v.sha256)

      local got = artifact.get(p .. "@1.0.0", dir .. "/out")
      assert.are.equal(v.sha256, got.sha256)
      sh("diff -r --no-dereference " .. q(dir .. "/src") .. " " .. q(dir .. "/out"))
      local modes = sh("cd " .. q(dir .. "/out") .. " && stat -c '%n %a %F' bin/tool share/data"
        .. " share/empty share/escape tool")
      assert.are.equal("bin/tool 751 regular file\nshare/data 600 regular file\n"
        .. "share/empty 700 directory\nshare/escape 777 symbolic link\n"
        .. "tool 777 symbolic link\n", modes)
      assert.are.equal("../../../etc/passwd\n", sh("readlink " .. q(dir .. "/out/share/escape")))

      -- A table reference, as pipelines pass them.
      artifact.get({ package = p, version = "1.0.0" }, dir .. "/out2")
      sh("diff -r --no-dereference " .. q(dir .. "/src") .. " " .. q(dir .. "/out2"))
      -- The tree listing.
      local entries = artifact.tree(p .. "@1.0.0")
      assert.are.equal("bin", entries[1].path)
      assert.are.equal("directory", entries[1].type)
    end)

    it("refuses a destination that is not empty and leaves it alone", function()
      tree(dir .. "/src")
      local p = pkg()
      artifact.put_dir(dir .. "/src", { package = p, version = "1" })
      helper.raises("EEXIST", artifact.get, p .. "@1", dir .. "/src")
      assert.are.equal("run", helper.read(dir .. "/src/bin/tool"))
    end)

    it("refuses a directory that holds the store itself", function()
      local home = dir .. "/proj/.tide"
      sh("mkdir -p " .. q(dir .. "/proj"))
      local out, rc = cli(home, "push " .. q(dir .. "/proj") .. " --package p --version 1")
      assert.are.equal(2, rc, out)
      assert.matches("holds the tide store", out)
    end)

    it("stores each distinct content once", function()
      sh("mkdir -p " .. q(dir .. "/a") .. " && for i in 1 2 3 4 5; do printf same > "
        .. q(dir .. "/a") .. "/f$i; done")
      local home = dir .. "/home"
      local out, rc = cli(home, "push " .. q(dir .. "/a") .. " --package x --version 1")
      assert.are.equal(0, rc, out)
      out, rc = cli(home, "push " .. q(dir .. "/a") .. " --package x --version 2")
      assert.are.equal(0, rc, out)
      -- One blob for the five files, one manifest (the same for both versions).
      assert.are.equal(2, count(home .. "/artifacts/blobs"))
    end)
  end)

  describe("files, refs and versions", function()
    it("puts a file and reads it back, by get and as a verified stream", function()
      helper.write(dir .. "/app.tar", string.rep("x", 100000))
      local p = pkg()
      local v = artifact.put_file(dir .. "/app.tar",
        { package = p, version = "2", namespace = "acme" })
      assert.are.equal("acme", v.namespace)
      assert.are.equal(100000, v.size)
      assert.are.equal(1, v.files)
      assert.are.equal("app.tar", v.asset)
      artifact.get("acme/" .. p .. "@2", dir .. "/out")
      assert.are.equal(100000, #helper.read(dir .. "/out/app.tar"))
      artifact.get("acme/" .. p .. "@2", dir .. "/one.tar", { asset = "app.tar" })
      assert.are.equal(100000, #helper.read(dir .. "/one.tar"))
      local s <close> = artifact.open("acme/" .. p .. "@2")
      local parts = {}
      for chunk in function() return s:read(30000) end do
        parts[#parts + 1] = chunk
      end
      assert.are.equal(4, #parts)
      assert.are.equal(string.rep("x", 100000), table.concat(parts))
      -- Without the namespace it is another package.
      helper.raises("ENOENT", artifact.info, p .. "@2")
    end)

    it("orders versions sensibly and resolves latest among Published ones", function()
      helper.write(dir .. "/f", "x")
      local p = pkg()
      for _, ver in ipairs({ "1.10.0", "1.9.0", "2.0.0-rc.1", "1.9.0-beta", "2.0.0", "10" }) do
        artifact.put_file(dir .. "/f", { package = p, version = ver })
      end
      local list = {}
      for _, v in ipairs(artifact.versions(p)) do
        list[#list + 1] = v.version
      end
      assert.are.same({ "1.9.0-beta", "1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0", "10" }, list)
      assert.are.equal("10", artifact.info(p .. "@latest").version)
      assert.are.equal("10", artifact.info(p).version)
      artifact.set_status(p .. "@10", "Unlisted")
      assert.are.equal("2.0.0", artifact.info(p .. "@latest").version)
      assert.are.equal(5, #artifact.versions(p))
      assert.are.equal(6, #artifact.versions(p, { all = true }))
    end)

    it("checks names: packages, versions, asset names", function()
      helper.write(dir .. "/f", "x")
      local p = pkg()
      for _, bad in ipairs({ "a/b", "a b", "", "a#b", string.rep("p", 256) }) do
        helper.raises("EINPUT", artifact.put_file, dir .. "/f", { package = bad, version = "1" })
      end
      helper.raises("EINPUT", artifact.put_file, dir .. "/f", { package = p, version = "latest" })
      helper.raises("EINPUT", artifact.put_file, dir .. "/f", { package = p })
      for _, bad in ipairs({ "..", ".", "a/b", " lead", "trail ", "dou  ble", "tab\tx", "a*b" }) do
        helper.raises("EINPUT", artifact.put_file, dir .. "/f",
          { package = p, version = "1", name = bad })
      end
      for _, good in ipairs({ "app-1.0.tar.gz", "read me", "ünïcode", "x~!@^&()-_+[]{};,." }) do
        artifact.put_file(dir .. "/f", { package = p, version = "1", name = good })
      end
      assert.are.equal(4, #artifact.info(p .. "@1").assets)
    end)

    it("checks the sha256 given at publish and records nothing when it differs", function()
      helper.write(dir .. "/f", "hello\n")
      local p = pkg()
      local wrong = string.rep("0", 64)
      local err = helper.raises("EINTEGRITY", artifact.put_file, dir .. "/f",
        { package = p, version = "1", sha256 = wrong })
      assert.matches("not 0000", err.message)
      helper.raises("ENOENT", artifact.info, p .. "@1")
      helper.raises("EINPUT", artifact.put_file, dir .. "/f",
        { package = p, version = "1", sha256 = "abc" })
      local right = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
      assert.are.equal(right, artifact.put_file(dir .. "/f",
        { package = p, version = "1", sha256 = right }).sha256)
    end)

    it("keeps assets immutable: same content is idempotent, other content conflicts", function()
      helper.write(dir .. "/f", "one")
      local p = pkg()
      artifact.put_file(dir .. "/f", { package = p, version = "1" })
      artifact.put_file(dir .. "/f", { package = p, version = "1" })
      helper.write(dir .. "/f", "two")
      helper.raises("ECONFLICT", artifact.put_file, dir .. "/f", { package = p, version = "1" })
      artifact.get(p .. "@1", dir .. "/out")
      assert.are.equal("one", helper.read(dir .. "/out/f"))
      -- A new asset name may join the version.
      artifact.put_file(dir .. "/f", { package = p, version = "1", name = "g" })
      assert.are.equal(2, #artifact.info(p .. "@1").assets)
    end)
  end)

  describe("status", function()
    it("follows the model's transitions", function()
      helper.write(dir .. "/f", "x")
      local p = pkg()
      local ref = p .. "@1"
      artifact.put_file(dir .. "/f", { package = p, version = "1", unfinished = true })
      assert.are.equal("Unfinished", artifact.info(ref).status)
      assert.are.equal(0, #artifact.versions(p))
      -- The last asset, published without unfinished, completes it.
      artifact.put_file(dir .. "/f", { package = p, version = "1", name = "last" })
      assert.are.equal("Published", artifact.info(ref).status)
      helper.raises("ECONFLICT", artifact.put_file, dir .. "/f",
        { package = p, version = "1", name = "more", unfinished = true })
      helper.raises("ECONFLICT", artifact.set_status, ref, "Unfinished")

      assert.are.equal("Unlisted", artifact.set_status(ref, "Unlisted").status)
      artifact.get(ref, dir .. "/o1") -- downloadable by exact version
      assert.are.equal("Archived", artifact.set_status(ref, "Archived").status)
      helper.raises("ECONFLICT", artifact.get, ref, dir .. "/o2")
      helper.raises("ECONFLICT", artifact.put_file, dir .. "/f",
        { package = p, version = "1", name = "again" })
      assert.are.equal("Published", artifact.set_status(ref, "Published").status)
      local v = artifact.set_status(ref, "Disposed")
      assert.are.equal("Disposed", v.status)
      assert.are.equal(0, #v.assets)
      for _, s in ipairs({ "Published", "Unlisted", "Archived" }) do
        helper.raises("ECONFLICT", artifact.set_status, ref, s)
      end
      helper.raises("ECONFLICT", artifact.get, ref, dir .. "/o3")
      -- Deleting removes it, so the version can be published again.
      artifact.delete(ref)
      artifact.put_file(dir .. "/f", { package = p, version = "1" })
      assert.are.equal("Published", artifact.info(ref).status)
    end)

    it("maps the CLI words and reports a forbidden change with exit 1", function()
      local home = dir .. "/home"
      helper.write(dir .. "/f", "x")
      assert.are.equal(0, select(2, cli(home, "push " .. q(dir .. "/f")
        .. " --package web --version 1.4.2")))
      for _, word in ipairs({ "unlist", "archive", "publish", "dispose" }) do
        local out, rc = cli(home, word .. " web@1.4.2")
        assert.are.equal(0, rc, out)
      end
      local out, rc = cli(home, "publish web@1.4.2")
      assert.are.equal(1, rc)
      assert.matches("Disposed: it cannot become Published", out)
      out, rc = cli(home, "push")
      assert.are.equal(2, rc)
      assert.matches("push needs a file", out)
      out, rc = cli(home, "frobnicate")
      assert.are.equal(2, rc, out)
      out, rc = cli(home, "push " .. q(dir .. "/f") .. " --package 'a b' --version 1")
      assert.are.equal(2, rc, out)
      assert.matches("invalid package", out)
    end)
  end)

  describe("integrity", function()
    it("never returns a corrupted blob silently", function()
      local home = dir .. "/home"
      tree(dir .. "/src")
      helper.write(dir .. "/f", string.rep("y", 5000))
      assert.are.equal(0, select(2, cli(home, "push " .. q(dir .. "/src")
        .. " --package t --version 1")))
      assert.are.equal(0, select(2, cli(home, "push " .. q(dir .. "/f")
        .. " --package f --version 1")))
      local out, rc = cli(home, "verify --all")
      assert.are.equal(0, rc, out)
      assert.matches("2 versions, 3 blobs checked, 0 bad", out)

      local sha = "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7" -- "data"
      corrupt(blob_path(home, sha))
      out, rc = cli(home, "pull t@1 " .. q(dir .. "/out"))
      assert.are.equal(1, rc)
      assert.matches("corrupt", out)
      assert.is_nil(helper.read(dir .. "/out/share/data"))
      assert.are.equal("", sh("ls " .. q(dir) .. " | grep out || true"))
      out, rc = cli(home, "verify t@1")
      assert.are.equal(1, rc)
      assert.matches("BAD  t@1  asset tree: blob " .. sha .. " is corrupt", out)

      local fsha = sh("sha256sum " .. q(dir .. "/f")):match("^%x+")
      corrupt(blob_path(home, fsha))
      out, rc = cli(home, "pull f@1 " .. q(dir .. "/out2"))
      assert.are.equal(1, rc)
      -- A file's read check is the XXH3-128 recorded at publish.
      assert.matches("blob " .. fsha .. " is corrupt %(its XXH3%-128 is", out)
      assert.is_nil(helper.read(dir .. "/out2/f"))
      out, rc = cli(home, "verify --all")
      assert.are.equal(1, rc)
      assert.matches("2 bad", out)
    end)
  end)

  describe("read checks", function()
    -- Takes a store back to its schema before read checks: no xxh3 column, schema version 1.
    local function downgrade(home)
      sh("sqlite3 " .. q(home .. "/state.db") .. " \"ALTER TABLE artifact_assets DROP COLUMN xxh3;"
        .. " UPDATE meta SET value = '1' WHERE key = 'schema.artifact'\"")
    end

    it("checks assets recorded before XXH3-128 with SHA-256, and a new push adds it", function()
      local home = dir .. "/home"
      helper.write(dir .. "/f", string.rep("z", 3 * 1024 * 1024 + 17))
      assert.are.equal(0, select(2, cli(home, "push " .. q(dir .. "/f")
        .. " --package old --version 1")))
      local out, rc = cli(home, "info old@1 --json")
      assert.are.equal(0, rc, out)
      local xxh3 = require("tide.json").decode(out).assets[1].xxh3
      assert.matches("^" .. string.rep("%x", 32) .. "$", xxh3)
      downgrade(home)

      -- The migration step brings the column back, empty: the read falls back to SHA-256.
      out, rc = cli(home, "pull old@1 " .. q(dir .. "/a"))
      assert.are.equal(0, rc, out)
      assert.are.equal(helper.read(dir .. "/f"), helper.read(dir .. "/a/f"))
      out = cli(home, "info old@1 --json")
      assert.is_nil(require("tide.json").decode(out).assets[1].xxh3)
      local sha = sh("sha256sum " .. q(dir .. "/f")):match("^%x+")
      corrupt(blob_path(home, sha))
      out, rc = cli(home, "pull old@1 " .. q(dir .. "/b"))
      assert.are.equal(1, rc)
      assert.matches("blob " .. sha .. " is corrupt %(its content hashes to", out)
      assert.is_nil(helper.read(dir .. "/b/f"))

      -- Pushing the same content again replaces the damaged blob with the verified copy it just
      -- wrote, and the asset gains its read check.
      assert.are.equal(0, select(2, cli(home, "push " .. q(dir .. "/f")
        .. " --package old --version 1")))
      out = cli(home, "info old@1 --json")
      assert.are.equal(xxh3, require("tide.json").decode(out).assets[1].xxh3)
      out, rc = cli(home, "pull old@1 " .. q(dir .. "/c"))
      assert.are.equal(0, rc, out)
      assert.are.equal(helper.read(dir .. "/f"), helper.read(dir .. "/c/f"))
      out, rc = cli(home, "verify old@1")
      assert.are.equal(0, rc, out)
    end)

    it("computes the read check of a blob from another store itself", function()
      local up, home = dir .. "/up", dir .. "/home"
      helper.write(dir .. "/f", string.rep("u", 70000))
      assert.are.equal(0, select(2, cli(up, "push " .. q(dir .. "/f")
        .. " --package far --version 1")))
      -- The other store's index claims a wrong XXH3-128: it is not believed.
      sh("sqlite3 " .. q(up .. "/state.db") .. " \"UPDATE artifact_assets SET xxh3 = '"
        .. string.rep("0", 32) .. "'\"")
      assert.are.equal(0, select(2, cli(home, "repo main " .. q(up))))
      local out, rc = cli(home, "pull far@1 " .. q(dir .. "/out"))
      assert.are.equal(0, rc, out)
      assert.are.equal(helper.read(dir .. "/f"), helper.read(dir .. "/out/f"))
      out = cli(home, "info far@1 --json")
      assert.are_not.equal(string.rep("0", 32), require("tide.json").decode(out).assets[1].xxh3)
    end)
  end)

  describe("gc and retention", function()
    it("removes unreferenced blobs after the grace period only", function()
      local home = dir .. "/home"
      helper.write(dir .. "/a", "aaa")
      helper.write(dir .. "/b", "bbb")
      sh("mkdir " .. q(dir .. "/t") .. " && printf ccc > " .. q(dir .. "/t/c"))
      for _, args in ipairs({ "push " .. q(dir .. "/a") .. " --package a --version 1",
        "push " .. q(dir .. "/b") .. " --package b --version 1",
        "push " .. q(dir .. "/t") .. " --package t --version 1" }) do
        assert.are.equal(0, select(2, cli(home, args)))
      end
      assert.are.equal(4, count(home .. "/artifacts/blobs"))
      assert.are.equal(0, select(2, cli(home, "dispose b@1")))
      local out = cli(home, "gc")
      assert.matches("removed 0 blobs", out) -- within the default grace period
      out = cli(home, "gc --grace 0 --dry-run")
      assert.matches("would remove 1 blob ", out)
      assert.are.equal(4, count(home .. "/artifacts/blobs"))
      out = cli(home, "gc --grace 0")
      assert.matches("removed 1 blob .*3 kept", out)
      assert.are.equal(3, count(home .. "/artifacts/blobs"))
      -- Files of a tree are kept through its manifest; everything still pulls.
      assert.are.equal(0, select(2, cli(home, "pull t@1 " .. q(dir .. "/o"))))
      assert.are.equal("ccc", helper.read(dir .. "/o/c"))
      assert.are.equal(0, select(2, cli(home, "dispose t@1")))
      assert.matches("removed 2 blobs", cli(home, "gc --grace 0"))
    end)

    it("waits for pushes between their blobs and their commit before it sweeps", function()
      local home = dir .. "/home"
      helper.write(dir .. "/a", "aaa")
      assert.are.equal(0, select(2, cli(home, "push " .. q(dir .. "/a") .. " --package a"
        .. " --version 1")))
      -- A push in flight holds the store lock shared; gc needs it exclusive.
      local native = require("tide._artifact")
      local lock = assert(native.lock(home .. "/artifacts", false))
      sh("{ (" .. q(helper.tide) .. " --home " .. q(home) .. " artifact gc --grace 0 > "
        .. q(dir .. "/gc.out") .. " 2>&1; echo done >> " .. q(dir .. "/gc.out")
        .. ") </dev/null >/dev/null 2>&1 & }")
      require("tide").sleep(0.5)
      assert.are.equal("", helper.read(dir .. "/gc.out") or "")
      lock:unlock()
      sh("for i in $(seq 1 500); do grep -q done " .. q(dir .. "/gc.out") .. " && break; "
        .. "sleep 0.01; done")
      assert.matches("removed 0 blobs", helper.read(dir .. "/gc.out"))
    end)

    it("keeps the N newest versions or those younger than D days", function()
      helper.write(dir .. "/f", "x")
      local p = pkg()
      for i = 1, 5 do
        artifact.put_file(dir .. "/f", { package = p, version = "1." .. i })
      end
      assert.are.same({ "1.1", "1.2", "1.3" }, artifact.retain(p, { keep = 2, dry_run = true }))
      assert.are.same({}, artifact.retain(p, { keep = 2, days = 1 })) -- all are young
      assert.are.same({ "1.1", "1.2", "1.3" }, artifact.retain(p, { keep = 2 }))
      assert.are.equal("Disposed", artifact.info(p .. "@1.1").status)
      assert.are.equal(2, #artifact.versions(p))
      helper.raises("EINPUT", artifact.retain, p, {})
    end)
  end)

  describe("upstreams", function()
    it("reads through to another repository and retains what it found", function()
      helper.write(dir .. "/f", "up")
      local p = pkg()
      artifact.put_file(dir .. "/f", { package = p, version = "1", repo = "upper" })
      artifact.repo("lower", { upstreams = { "upper" } })
      helper.raises("ENOENT", artifact.info, p .. "@1", { repo = "lower", upstream = false })
      local v = artifact.get(p .. "@1", dir .. "/o", { repo = "lower" })
      assert.are.equal("lower", v.repo)
      assert.are.equal("repo:upper", v.origin)
      -- Retained: it survives the upstream copy going away.
      artifact.delete(p .. "@1", { repo = "upper" })
      assert.are.equal("1", artifact.info(p .. "@1", { repo = "lower" }).version)
      helper.raises("EINPUT", artifact.repo, "lower", { upstreams = { "lower" } })
    end)

    it("reads through to another tide store on disk, copying the blobs verified", function()
      local other = dir .. "/other"
      tree(dir .. "/src")
      assert.are.equal(0, select(2, cli(other, "push " .. q(dir .. "/src")
        .. " --package web --version 3")))
      local home = dir .. "/home"
      local out, rc = cli(home, "repo main " .. q(other .. "#main"))
      assert.are.equal(0, rc, out)
      out, rc = cli(home, "pull web@3 " .. q(dir .. "/out"))
      assert.are.equal(0, rc, out)
      sh("diff -r --no-dereference " .. q(dir .. "/src") .. " " .. q(dir .. "/out"))
      -- Cached: the other store can go.
      sh("rm -rf " .. q(other))
      out, rc = cli(home, "pull web@3 " .. q(dir .. "/out2"))
      assert.are.equal(0, rc, out)
      -- A store that is gone is an error naming it, not "not found"; nothing is created there.
      out, rc = cli(home, "pull web@4 " .. q(dir .. "/out3"))
      assert.are.equal(1, rc, out)
      assert.matches("upstream store '" .. other:gsub("%p", "%%%0") .. "' %(repository main%)", out)
      assert.is_nil(require("tide.uv").fs_lstat(other))
      assert.is_nil(require("tide.uv").fs_lstat(dir .. "/out3"))
    end)
  end)

  describe("faults", function()
    it("lets two tide processes push at once", function()
      local home = dir .. "/home"
      tree(dir .. "/src")
      sh("seq 1 300 | while read i; do printf \"$i\" > " .. q(dir .. "/src/bin") .. "/f$i; done")
      assert.are.equal(0, select(2, cli(home, "ls"))) -- the store exists; the pushes race
      local cmd = q(helper.tide) .. " --home " .. q(home) .. " artifact push " .. q(dir .. "/src")
        .. " --package w --version "
      sh("(" .. cmd .. "1 >/dev/null & " .. cmd .. "2 >/dev/null & " .. cmd .. "1 >/dev/null & "
        .. "wait)")
      local out, rc = cli(home, "verify --all")
      assert.are.equal(0, rc, out)
      assert.matches("2 versions", out)
      assert.are.equal(0, count(home .. "/artifacts/tmp"))
      assert.are.equal(302 + 1, count(home .. "/artifacts/blobs"))
    end)

    it("leaves nothing visible when a tide is killed with SIGKILL mid-put", function()
      local home = dir .. "/home"
      sh("head -c 400M /dev/zero > " .. q(dir .. "/big"))
      assert.are.equal(0, select(2, cli(home, "ls")))
      sh(q(helper.tide) .. " --home " .. q(home) .. " artifact push " .. q(dir .. "/big")
        .. " --package big --version 1 >/dev/null 2>&1 & echo $! > " .. q(dir .. "/pid"))
      local pid = helper.read(dir .. "/pid"):match("%d+")
      -- Wait until the blob is being written, then kill.
      sh("for i in $(seq 1 500); do [ -n \"$(ls -A " .. q(home .. "/artifacts/tmp")
        .. " 2>/dev/null)\" ] && break; sleep 0.01; done; kill -9 " .. pid
        .. "; while kill -0 " .. pid .. " 2>/dev/null; do sleep 0.01; done")
      local out, rc = cli(home, "ls")
      assert.are.equal(0, rc, out)
      assert.matches("no packages", out)
      assert.are.equal(0, count(home .. "/artifacts/blobs"))
      assert.are.equal("ok\n", sh("sqlite3 " .. q(home .. "/state.db")
        .. " 'PRAGMA integrity_check'"))
      -- The leftover is only a temporary file, which gc removes once it is old.
      sh("find " .. q(home .. "/artifacts/tmp") .. " -type f -exec touch -d '2 hours ago' {} +")
      cli(home, "gc")
      assert.are.equal(0, count(home .. "/artifacts/tmp"))
    end)

    it("fails clearly on a full disk and publishes nothing", function()
      local mnt = dir .. "/mnt"
      sh("mkdir " .. q(mnt))
      local _, rc = helper.sh("mount -t tmpfs -o size=3m tmpfs " .. q(mnt) .. " 2>/dev/null")
      if rc ~= 0 then
        pending("mounting a tmpfs needs root")
        return
      end
      local ok, err = pcall(function()
        local home = mnt .. "/home"
        sh("head -c 6M /dev/urandom > " .. q(dir .. "/big") .. " && mkdir " .. q(dir .. "/t")
          .. " && head -c 2M /dev/urandom > " .. q(dir .. "/t/x")
          .. " && head -c 2M /dev/urandom > " .. q(dir .. "/t/y"))
        assert.are.equal(0, select(2, cli(home, "ls")))
        for _, what in ipairs({ q(dir .. "/big"), q(dir .. "/t") }) do
          local out, code = cli(home, "push " .. what .. " --package big --version 1")
          assert.are.equal(1, code, out)
          assert.matches("no space left on device", out)
          assert.matches("no packages", cli(home, "ls"))
          assert.are.equal(0, count(home .. "/artifacts/tmp"))
          assert.are.equal(0, count(home .. "/artifacts/blobs"))
        end
      end)
      sh("umount " .. q(mnt))
      assert(ok, err)
    end)

    it("fails clearly on a file size limit and publishes nothing", function()
      local home = dir .. "/home"
      sh("head -c 8M /dev/zero > " .. q(dir .. "/big") .. " && mkdir " .. q(dir .. "/t")
        .. " && head -c 3M /dev/urandom > " .. q(dir .. "/t/x"))
      assert.are.equal(0, select(2, cli(home, "ls")))
      for _, what in ipairs({ q(dir .. "/big"), q(dir .. "/t") }) do
        local out, rc = helper.sh("sh -c 'ulimit -f 2048; exec \"$0\" \"$@\"' " .. q(helper.tide)
          .. " --home " .. q(home) .. " artifact push " .. what
          .. " --package big --version 1 2>&1")
        assert.are.equal(1, rc, out)
        assert.matches("file too large", out)
        assert.matches("no packages", cli(home, "ls"))
        assert.are.equal(0, count(home .. "/artifacts/tmp"))
        assert.are.equal(0, count(home .. "/artifacts/blobs"))
      end
    end)
  end)
  describe("pulls", function()
    local uv = require("tide.uv")

    it("leaves no destination when a version of files fails to restore", function()
      local home = dir .. "/home"
      helper.write(dir .. "/f", string.rep("p", 5000))
      cli_ok(home, "push " .. q(dir .. "/f") .. " --package f --version 1")
      local sha = sh("sha256sum " .. q(dir .. "/f")):match("^%x+")
      corrupt(blob_path(home, sha))
      local out, rc = cli(home, "pull f@1 " .. q(dir .. "/new/deeper/out"))
      assert.are.equal(1, rc, out)
      assert.matches("is corrupt", out)
      assert.is_nil(uv.fs_lstat(dir .. "/new")) -- the parents it made are gone as well
      -- A missing blob, and a write limit: no directory either, and no temporary beside it.
      sh("rm -f " .. q(blob_path(home, sha)))
      out, rc = cli(home, "pull f@1 " .. q(dir .. "/out"))
      assert.are.equal(1, rc, out)
      assert.matches("missing from the store", out)
      assert.is_nil(uv.fs_lstat(dir .. "/out"))
      helper.write(dir .. "/g", string.rep("g", 3 * 1024 * 1024))
      cli_ok(home, "push " .. q(dir .. "/g") .. " --package g --version 1")
      out, rc = helper.sh("sh -c 'ulimit -f 1024; exec \"$0\" \"$@\"' " .. q(helper.tide)
        .. " --home " .. q(home) .. " artifact pull g@1 " .. q(dir .. "/out") .. " 2>&1")
      assert.are.equal(1, rc, out)
      assert.matches("file too large", out)
      assert.are.equal("", sh("ls " .. q(dir) .. " | grep '^out' || true"))
    end)

    it("fills an empty current directory in place", function()
      local home = dir .. "/home"
      tree(dir .. "/src")
      cli_ok(home, "push " .. q(dir .. "/src") .. " --package t --version 1")
      sh("mkdir " .. q(dir .. "/here"))
      local out, rc = helper.sh("cd " .. q(dir .. "/here") .. " && " .. q(helper.tide) .. " --home "
        .. q(home) .. " artifact pull t@1 . 2>&1")
      assert.are.equal(0, rc, out)
      sh("diff -r --no-dereference " .. q(dir .. "/src") .. " " .. q(dir .. "/here"))
      -- Not empty any more: refused, left alone.
      out, rc = helper.sh("cd " .. q(dir .. "/here") .. " && " .. q(helper.tide) .. " --home "
        .. q(home) .. " artifact pull t@1 . 2>&1")
      assert.are.equal(1, rc, out)
      assert.matches("exists and is not an empty directory", out)
    end)

    it("refuses to overwrite an existing file with --asset", function()
      local home = dir .. "/home"
      helper.write(dir .. "/f", "new")
      helper.write(dir .. "/keep", "mine")
      cli_ok(home, "push " .. q(dir .. "/f") .. " --package f --version 1")
      local out, rc = cli(home, "pull f@1 " .. q(dir .. "/keep") .. " --asset f")
      assert.are.equal(1, rc, out)
      assert.matches("exists", out)
      assert.are.equal("mine", helper.read(dir .. "/keep"))
      out, rc = cli(home, "pull f@1 " .. q(dir .. "/fresh") .. " --asset f")
      assert.are.equal(0, rc, out)
      assert.are.equal("new", helper.read(dir .. "/fresh"))
    end)

    it("cleans the debris of a pull killed with SIGKILL", function()
      local home = dir .. "/home"
      helper.write(dir .. "/big", string.rep("b", 100000))
      cli_ok(home, "push " .. q(dir .. "/big") .. " --package b --version 1")
      -- The blob becomes a FIFO for a while: the pull blocks reading it, its temporary made.
      local blob = blob_path(home, sh("sha256sum " .. q(dir .. "/big")):match("^%x+"))
      sh("mv " .. q(blob) .. " " .. q(dir .. "/saved") .. " && mkfifo " .. q(blob))
      for _, extra in ipairs({ "", " --asset big" }) do
        sh("mkdir -p " .. q(dir .. "/d") .. " && rm -rf " .. q(dir .. "/d") .. "/*")
        sh(q(helper.tide) .. " --home " .. q(home) .. " artifact pull b@1 " .. q(dir .. "/d/out")
          .. extra .. " >/dev/null 2>&1 & echo $! > " .. q(dir .. "/pid"))
        local pid = helper.read(dir .. "/pid"):match("%d+")
        sh("for i in $(seq 1 1000); do [ -n \"$(ls " .. q(dir .. "/d") .. " | grep tide-tmp)\" ]"
          .. " && break; sleep 0.01; done; kill -9 " .. pid .. "; while kill -0 " .. pid
          .. " 2>/dev/null; do sleep 0.01; done")
        assert.matches("out%.tide%-tmp%-" .. pid, sh("ls " .. q(dir .. "/d")))
        sh("rm " .. q(blob) .. " && cp " .. q(dir .. "/saved") .. " " .. q(blob))
        local out, rc = cli(home, "pull b@1 " .. q(dir .. "/d/out") .. extra)
        assert.are.equal(0, rc, out)
        assert.are.equal("out\n", sh("ls " .. q(dir .. "/d")))
        sh("rm " .. q(blob) .. " && mkfifo " .. q(blob))
      end
    end)
  end)

  describe("review rules", function()
    it("accepts only letters, digits and the listed punctuation in asset names", function()
      helper.write(dir .. "/f", "x")
      local p = pkg()
      for _, bad in ipairs({ "no\u{a0}break", "rev\u{202e}txt", "zero\u{200b}width",
        "div\u{2215}slash", "bell\u{7}", "a`b", "a*b" }) do
        helper.raises("EINPUT", artifact.put_file, dir .. "/f",
          { package = p, version = "1", name = bad })
      end
      for _, good in ipairs({ "Ωmega", "数据", "١٢٣", "ünïcode" }) do
        artifact.put_file(dir .. "/f", { package = p, version = "1", name = good })
      end
    end)

    it("sorts numeric pre-release identifiers before alphanumeric ones", function()
      local list = { "1.0.0", "1.0.0-rc.1", "1.0.0-beta.11", "1.0.0-beta.2", "1.0.0-beta",
        "1.0.0-alpha.beta", "1.0.0-alpha.1", "1.0.0-alpha", "1.0.0-a", "1.0.0-1" }
      table.sort(list, function(a, b) return artifact.compare_versions(a, b) < 0 end)
      assert.are.same({ "1.0.0-1", "1.0.0-a", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
        "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0" }, list)
    end)

    it("speaks in the user's words and escapes what it prints", function()
      local home = dir .. "/home"
      sh("mkdir -p " .. q(dir .. "/t") .. " && printf x > " .. q(dir .. "/t")
        .. "/\"$(printf 'a\\033[31mb')\"")
      local out, rc = cli(home, "push " .. q(dir .. "/t")
        .. " --package s --version 1 --sha256 xyz")
      assert.are.equal(2, rc, out)
      assert.matches("64 hexadecimal", out)
      cli_ok(home, "push " .. q(dir .. "/t") .. " --package s --version 1")
      out = cli(home, "tree s@1")
      assert.matches("a\\x1b[31mb", out, 1, true)
      assert.is_nil(out:find("\27", 1, true))
      out, rc = cli(home, "publish s")
      assert.are.equal(2, rc, out)
      assert.matches("publish needs an exact version", out)
      assert.is_nil(out:find("set_status", 1, true))
      cli_ok(home, "archive s@1")
      out, rc = cli(home, "pull s@1 " .. q(dir .. "/o"))
      assert.are.equal(1, rc, out)
      assert.matches("s@1 is Archived", out, 1, true)
      out, rc = cli(home, "repo main a b c d e f g h i j k")
      assert.are.equal(2, rc, out)
      for _, u in ipairs({ "/tmp/x#", "/tmp/x#a#b", "x#main" }) do
        out, rc = cli(home, "repo main " .. q(u))
        assert.are.equal(2, rc, out)
        assert.matches("invalid upstream", out)
      end
    end)
  end)

  describe("upstream stores", function()
    it("searches another store's own upstreams, read-only, and reports a damaged one", function()
      local a, b, c = dir .. "/a", dir .. "/b", dir .. "/c"
      helper.write(dir .. "/f", "deep")
      cli_ok(c, "push " .. q(dir .. "/f") .. " --package d --version 1")
      cli_ok(b, "repo main " .. q(c .. "#main"))
      cli_ok(a, "repo main " .. q(b))
      -- (A reader of a WAL database may add its -shm and -wal files; nothing else changes.)
      local listing = "ls -R " .. q(b) .. " " .. q(c) .. " | grep -v 'state.db-' | md5sum"
      local before = sh(listing)
      local out, rc = cli(a, "pull d@1 " .. q(dir .. "/o"))
      assert.are.equal(0, rc, out)
      assert.are.equal("deep", helper.read(dir .. "/o/f"))
      assert.matches("store:" .. c:gsub("%p", "%%%0") .. "#main",
        require("tide.json").decode((cli(a, "info d@1 --json"))).origin)
      assert.are.equal(before, sh(listing))
      -- An empty directory as an upstream store stays empty; a damaged one is named.
      sh("mkdir " .. q(dir .. "/empty"))
      cli_ok(a, "repo main " .. q(dir .. "/empty"))
      out, rc = cli(a, "pull e@1 " .. q(dir .. "/o2"))
      assert.are.equal(1, rc, out)
      assert.matches("upstream store", out)
      assert.are.equal("", sh("ls -A " .. q(dir .. "/empty")))
      helper.write(c .. "/state.db", "garbage garbage garbage garbage garbage")
      cli_ok(a, "repo main " .. q(c))
      out, rc = cli(a, "pull x@1 " .. q(dir .. "/o3"))
      assert.are.equal(1, rc, out)
      assert.matches("upstream store '" .. c:gsub("%p", "%%%0") .. "'", out)
    end)
  end)

  describe("gc rules", function()
    it("counts the grace period from when a blob lost its last reference", function()
      local home = dir .. "/home"
      helper.write(dir .. "/a", "released")
      cli_ok(home, "push " .. q(dir .. "/a") .. " --package a --version 1")
      sh("find " .. q(home .. "/artifacts/blobs") .. " -type f -exec touch -d '2 hours ago' {} +")
      cli_ok(home, "dispose a@1")
      assert.matches("removed 0 blobs", cli(home, "gc")) -- written long ago, released just now
      assert.are.equal(1, count(home .. "/artifacts/blobs"))
      assert.matches("removed 1 blob ", cli(home, "gc --grace 0"))
    end)

    it("names the version of a damaged manifest and goes on", function()
      local home = dir .. "/home"
      sh("mkdir " .. q(dir .. "/t") .. " && printf ccc > " .. q(dir .. "/t/c"))
      helper.write(dir .. "/b", "bbb")
      cli_ok(home, "push " .. q(dir .. "/t") .. " --package t --version 1")
      cli_ok(home, "push " .. q(dir .. "/b") .. " --package b --version 1")
      cli_ok(home, "delete b@1")
      local info = require("tide.json").decode((cli(home, "info t@1 --json")))
      local m = blob_path(home, info.sha256)
      corrupt(m)
      local out, rc = cli(home, "gc --grace 0")
      assert.are.equal(1, rc, out)
      assert.matches("t@1 asset tree in repository main: its manifest cannot be read", out)
      assert.matches("removed 1 blob ", out) -- b's, unreferenced; t's file is kept
      assert.are.equal(2, count(home .. "/artifacts/blobs"))
    end)

    it("drops the stat caches of directories that are gone", function()
      local home = dir .. "/home"
      sh("mkdir " .. q(dir .. "/t") .. " && printf ccc > " .. q(dir .. "/t/c"))
      cli_ok(home, "push " .. q(dir .. "/t") .. " --package t --version 1")
      assert.are.equal(1, count(home .. "/artifacts/cache"))
      assert.matches("0 stat caches", cli(home, "gc"))
      sh("rm -rf " .. q(dir .. "/t"))
      assert.matches("1 stat cache;", cli(home, "gc"))
      assert.are.equal(0, count(home .. "/artifacts/cache"))
    end)
  end)
end)
