-- tide.fs: glob and match, walk, mkdir_p, rm_r, copy_tree, write_atomic, read, write, exists.
-- Hostile cases: .. and absolute glob patterns, symbolic link loops, rm_r on a link to a
-- directory, refusing "/" and "", copying a tree into itself.
local fs = require("tide.fs")
local tide = require("tide")
local helper = require("helper")

local put = helper.write

local function sh(cmd)
  local out, rc = helper.sh(cmd)
  assert.are.equal(0, rc, out)
  return out
end

local function mode_of(path)
  return (sh("stat -c %a '" .. path .. "'"):gsub("%s+$", ""))
end

local function is_link(path)
  return (sh("test -L '" .. path .. "' && echo yes || echo no"):match("yes")) ~= nil
end

-- Checks a fail triple and returns its message.
local function fails(code, v, msg, got)
  assert.is_nil(v)
  assert.are.equal(code, got)
  assert.are.equal("string", type(msg))
  return msg
end

describe("tide.fs", function()
  local dir

  before_each(function()
    dir = helper.tmpdir()
  end)

  after_each(function()
    sh("chmod -R u+rwx '" .. dir .. "' && rm -rf '" .. dir .. "'")
  end)

  -- src/{a.c,b.h,sub/c.c,.cache/d.c}, .top.c, empty/, srclink -> src, src/loop -> .
  local function tree()
    sh("cd '" .. dir .. "' && mkdir -p src/sub src/.cache empty && touch src/a.c src/b.h " ..
      "src/sub/c.c src/.cache/d.c .top.c && ln -s src srclink && ln -s . src/loop")
  end

  describe("glob", function()
    it("expands ** across directories, sorted, relative to cwd", function()
      tree()
      assert.are.same({ "src/a.c", "src/sub/c.c" }, fs.glob("**/*.c", { cwd = dir }))
      assert.are.same({ "src/a.c", "src/b.h", "src/loop", "src/sub" },
        fs.glob("src/*", { cwd = dir }))
      assert.are.same({ "empty", "src" }, fs.glob("*/", { cwd = dir }))
      assert.are.same({}, fs.glob("*.none", { cwd = dir }))
    end)

    it("skips hidden names unless asked, but takes literal dot segments", function()
      tree()
      assert.are.same({ ".top.c", "src/.cache/d.c", "src/a.c", "src/sub/c.c" },
        fs.glob("**/*.c", { cwd = dir, hidden = true }))
      assert.are.same({ "src/.cache/d.c" }, fs.glob("src/.cache/*", { cwd = dir }))
      assert.are.same({ ".top.c" }, fs.glob(".*.c", { cwd = dir }))
    end)

    it("prunes excluded paths", function()
      tree()
      assert.are.same({ "empty", "src", "src/a.c", "src/loop", "srclink" },
        fs.glob("**", { cwd = dir, exclude = { "src/sub", "**/*.h" } }))
      assert.are.same({ "src/a.c" }, fs.glob("src/*.c", { cwd = dir, exclude = "src/sub/**" }))
    end)

    it("does not follow link loops with **", function()
      tree()
      local all = fs.glob("**", { cwd = dir })
      assert.are.equal(8, #all) -- src/loop and srclink are listed, not entered
    end)

    it("handles .. and absolute patterns as written", function()
      tree()
      local sub = dir .. "/src/sub"
      assert.are.same({ "../a.c" }, fs.glob("../*.c", { cwd = sub }))
      assert.are.same({ "../../src/b.h" }, fs.glob("../../**/*.h", { cwd = sub }))
      assert.are.same({ dir .. "/src/a.c" }, fs.glob(dir .. "/src/*.c", { cwd = "/nonexistent" }))
      -- wildcards never produce . or ..
      for _, p in ipairs(fs.glob("*", { cwd = dir, hidden = true })) do
        assert.is_true(p ~= "." and p ~= "..")
      end
      assert.are.same({}, fs.glob("/nonexistent-tide-dir/**"))
    end)

    it("returns a literal pattern when it exists", function()
      tree()
      assert.are.same({ "src/a.c" }, fs.glob("src/a.c", { cwd = dir }))
      assert.are.same({}, fs.glob("src/zzz.c", { cwd = dir }))
    end)

    it("raises on bad arguments and unknown options", function()
      assert.has_error(function() fs.glob({}) end)
      assert.has_error(function() fs.glob("*", "cwd") end)
      local ok, err = pcall(fs.glob, "*", { cwdir = "." })
      assert.is_false(ok)
      assert.matches("unexpected key 'cwdir'", err)
      assert.has_error(function() fs.glob("*", { exclude = { 1 } }) end)
      assert.has_error(function() fs.glob("*", { hidden = "yes" }) end)
    end)

    it("blocks only the calling task", function()
      tree()
      local t = tide.spawn(function() return fs.glob("**", { cwd = dir }) end)
      local other = tide.spawn(function() return "ran" end)
      assert.are.equal("ran", other:wait())
      assert.are.equal(8, #t:wait())
    end)

    it("raises outside a task", function()
      local co = coroutine.create(function() return fs.glob("*") end)
      local ok = coroutine.resume(co)
      assert.is_false(ok)
    end)
  end)

  describe("match", function()
    it("applies the glob rules to a path", function()
      assert.is_true(fs.match("src/**/*.c", "src/a/b/c.c"))
      assert.is_true(fs.match("src/**/*.c", "src/c.c"))
      assert.is_false(fs.match("src/**/*.c", "src/.git/c.c"))
      assert.is_true(fs.match("src/**/*.c", "src/.git/c.c", { hidden = true }))
      assert.is_false(fs.match("*.c", "a/b.c"))
      assert.is_false(fs.match("a/../b", "b"))
      assert.is_false(fs.match("**", "../etc/passwd"))
      assert.is_false(fs.match("/etc/*", "etc/passwd"))
      assert.is_true(fs.match("[!a]?", "bc"))
      assert.has_error(function() fs.match("*") end)
      assert.has_error(function() fs.match("*", "a", { hiden = true }) end)
    end)
  end)

  describe("walk", function()
    it("lists every entry with its type, links not followed", function()
      tree()
      local got = {}
      assert.is_true(fs.walk(dir .. "/src", function(path, kind)
        got[#got + 1] = path:sub(#dir + 6) .. ":" .. kind
      end))
      assert.are.same({ ".cache:directory", ".cache/d.c:file", "a.c:file", "b.h:file",
        "loop:link", "sub:directory", "sub/c.c:file" }, got)
    end)

    it("works as an iterator and stops when fn returns false", function()
      tree()
      local n = 0
      for path, kind in assert(fs.walk(dir)) do
        assert.is_string(path)
        assert.is_string(kind)
        n = n + 1
      end
      assert.are.equal(11, n)
      local seen = 0
      fs.walk(dir, function()
        seen = seen + 1
        return seen < 3 and true or false
      end)
      assert.are.equal(3, seen)
    end)

    it("lets fn block", function()
      tree()
      local n = 0
      fs.walk(dir .. "/src/sub", function()
        tide.sleep(0.001)
        n = n + 1
      end)
      assert.are.equal(1, n)
    end)

    it("returns the fail triple for a missing directory", function()
      local msg = fails("ENOENT", fs.walk(dir .. "/nope"))
      assert.are.equal("walk '" .. dir .. "/nope': no such file or directory", msg)
      put(dir .. "/f")
      fails("ENOTDIR", fs.walk(dir .. "/f"))
    end)
  end)

  describe("mkdir_p", function()
    it("creates missing parents and accepts existing directories", function()
      assert.is_true(fs.mkdir_p(dir .. "/a/b/c"))
      assert.is_true(fs.mkdir_p(dir .. "/a/b/c"))
      assert.is_true(fs.exists(dir .. "/a/b/c"))
      assert.is_true(fs.mkdir_p(dir .. "/m", "0700"))
      assert.are.equal("700", mode_of(dir .. "/m"))
      put(dir .. "/file")
      fails("EEXIST", fs.mkdir_p(dir .. "/file"))
      fails("ENOTDIR", fs.mkdir_p(dir .. "/file/x"))
      assert.has_error(function() fs.mkdir_p(dir .. "/z", "999") end)
      assert.has_error(function() fs.mkdir_p(dir .. "/z", 99999) end)
    end)
  end)

  describe("rm_r", function()
    it("removes a tree", function()
      tree()
      assert.is_true(fs.rm_r(dir .. "/src"))
      assert.is_false(fs.exists(dir .. "/src"))
    end)

    it("removes a link to a directory, never the directory", function()
      sh("mkdir '" .. dir .. "/target' && touch '" .. dir .. "/target/keep' && ln -s '" .. dir ..
        "/target' '" .. dir .. "/link' && mkdir '" .. dir .. "/tree' && ln -s ../target '" ..
        dir .. "/tree/inner'")
      assert.is_true(fs.rm_r(dir .. "/link/"))
      assert.is_false(is_link(dir .. "/link"))
      assert.is_true(fs.exists(dir .. "/target/keep"))
      assert.is_true(fs.rm_r(dir .. "/tree"))
      assert.is_true(fs.exists(dir .. "/target/keep"))
    end)

    it("refuses the root, empty paths, . and ..", function()
      for _, p in ipairs({ "/", "", "//", "/..", ".", "..", dir .. "/.." }) do
        local msg = fails("EINVAL", fs.rm_r(p))
        assert.matches("^rm_r '", msg)
      end
      assert.are.equal("rm_r '/': refusing to remove the root directory", select(2, fs.rm_r("/")))
      assert.is_true(fs.exists(dir))
    end)

    it("returns ENOENT for a missing path", function()
      local msg = fails("ENOENT", fs.rm_r(dir .. "/missing"))
      assert.are.equal("rm_r '" .. dir .. "/missing': no such file or directory", msg)
    end)
  end)

  describe("copy_tree", function()
    it("copies files with modes, links as links and empty directories", function()
      sh("cd '" .. dir .. "' && mkdir -p s/empty s/sub && printf 'x' > s/sub/run && " ..
        "chmod 750 s/sub/run && ln -s sub/run s/rel && ln -s .. s/sub/up && chmod 711 s/sub")
      assert.is_true(fs.copy_tree(dir .. "/s", dir .. "/d"))
      assert.are.equal("750", mode_of(dir .. "/d/sub/run"))
      assert.are.equal("711", mode_of(dir .. "/d/sub"))
      assert.is_true(is_link(dir .. "/d/rel"))
      assert.are.equal("sub/run\n", sh("readlink '" .. dir .. "/d/rel'"))
      assert.is_true(is_link(dir .. "/d/sub/up")) -- the loop stays a link
      assert.is_true(fs.exists(dir .. "/d/empty"))
      assert.are.equal("x", fs.read(dir .. "/d/sub/run"))
    end)

    it("refuses an existing destination and reports a missing source", function()
      sh("mkdir '" .. dir .. "/s' '" .. dir .. "/d'")
      fails("EEXIST", fs.copy_tree(dir .. "/s", dir .. "/d"))
      fails("ENOENT", fs.copy_tree(dir .. "/none", dir .. "/e"))
    end)

    it("does not copy a copy into itself", function()
      sh("mkdir -p '" .. dir .. "/s/a' && touch '" .. dir .. "/s/a/f'")
      assert.is_true(fs.copy_tree(dir .. "/s", dir .. "/s/a/copy"))
      assert.is_true(fs.exists(dir .. "/s/a/copy/a/f"))
      assert.is_false(fs.exists(dir .. "/s/a/copy/a/copy"))
    end)
  end)

  describe("write_atomic", function()
    it("replaces a file, keeping its mode, leaving no temporary file", function()
      local p = dir .. "/config"
      put(p, "old")
      sh("chmod 640 '" .. p .. "'")
      assert.is_true(fs.write_atomic(p, "new\0data"))
      assert.are.equal("new\0data", fs.read(p))
      assert.are.equal("640", mode_of(p))
      assert.is_true(fs.write_atomic(p, "again", "600"))
      assert.are.equal("600", mode_of(p))
      assert.is_true(fs.write_atomic(dir .. "/fresh", "", 420)) -- 0644
      assert.are.equal("644", mode_of(dir .. "/fresh"))
      assert.are.same({ "config", "fresh" }, fs.glob("*", { cwd = dir, hidden = true }))
    end)

    it("replaces a symbolic link rather than writing through it", function()
      put(dir .. "/target", "keep")
      sh("ln -s target '" .. dir .. "/link'")
      assert.is_true(fs.write_atomic(dir .. "/link", "new"))
      assert.is_false(is_link(dir .. "/link"))
      assert.are.equal("keep", fs.read(dir .. "/target"))
    end)

    it("fails cleanly when the directory is missing", function()
      fails("ENOENT", fs.write_atomic(dir .. "/no/such/file", "x"))
      assert.has_error(function() fs.write_atomic(dir .. "/x", {}) end)
    end)
  end)

  describe("read, write and exists", function()
    it("read and write whole files", function()
      local p = dir .. "/f"
      assert.is_true(fs.write(p, "a\0b"))
      assert.are.equal("a\0b", fs.read(p))
      assert.are.equal("", (fs.read("/dev/null")))
      assert.is_true(#fs.read("/proc/self/status") > 0) -- size 0 in stat, not empty
      local msg = fails("ENOENT", fs.read(dir .. "/none"))
      assert.are.equal("read '" .. dir .. "/none': no such file or directory", msg)
      fails("EISDIR", fs.read(dir))
      fails("ENOENT", fs.write(dir .. "/no/f", "x"))
    end)

    it("exists follows links and says false for missing paths", function()
      put(dir .. "/f")
      sh("ln -s nowhere '" .. dir .. "/dangling'")
      assert.is_true(fs.exists(dir .. "/f"))
      assert.is_false(fs.exists(dir .. "/none"))
      assert.is_false(fs.exists(dir .. "/f/under-a-file"))
      assert.is_false(fs.exists(dir .. "/dangling"))
      assert.has_error(function() fs.exists() end)
    end)
  end)
end)
