-- tide build against a hostile buildspec: links out of the source, absolute paths, the cache
-- written through links, resource limits. The commands of a build are as untrusted as the
-- source they come from; tide itself (often root) must never read or write for them outside it.
local h = require("spec.helper")
local bs = require("tide.buildspec")

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The spec's TIDE_HOME, and so the cache, outlives a run: every project name is new.
local function uniq(name)
  return string.format("%s-%x-%08x", name, require("tide.uv").hrtime(),
    math.random(0, 0x7fffffff))
end

local function build(src, text, opts)
  h.write(src .. "/buildspec.yml", text)
  local lines = {}
  local o = { src = src, sandbox = false, project = "p", quiet = true,
    on_line = function(l) lines[#lines + 1] = l end }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  local r = bs.run(o)
  return r, table.concat(lines, "\n")
end

local function exists(p)
  return os.execute("test -e " .. q(p) .. " -o -L " .. q(p)) == true
end

local function parse(text)
  return bs.parse(text, { name = "bs.yml" })
end

-- A secret outside the source, and a directory of secrets.
local function secrets()
  local outside = h.tmpdir()
  os.execute("mkdir -p " .. q(outside .. "/dir"))
  h.write(outside .. "/secret", "s3cr3t\n")
  h.write(outside .. "/dir/deep", "deep\n")
  return outside
end

local PHASES = "version: 0.2\nphases:\n  build:\n    commands:\n      - %s\n"

describe("buildspec security: artifacts and reports stay in the source", function()
  it("refuses a link to a file outside: FAILED at UPLOAD_ARTIFACTS, nothing written", function()
    local src, outside = h.tmpdir(), secrets()
    local out = h.tmpdir() .. "/out"
    local r, log = build(src, string.format(PHASES, q("ln -sf " .. outside
      .. "/secret leak; echo ok > ok")) .. "artifacts:\n  files: [leak, ok]\n", { output = out })
    assert.equal("FAILED", r.status)
    assert.truthy(log:find("leak' is a link to '" .. outside .. "/secret'", 1, true), log)
    assert.is_false(exists(out), h.sh("ls -la " .. q(out))) -- no empty output directory
  end)

  it("never lists nor copies a directory link out of the source", function()
    local src, outside = h.tmpdir(), secrets()
    local out = h.tmpdir() .. "/out"
    for _, pat in ipairs({ "'rootdir/**/*'", "'**/*'", "rootdir" }) do
      local r, log = build(src, string.format(PHASES, q("ln -sfn " .. outside
        .. " rootdir; echo ok > ok")) .. "artifacts:\n  files: [" .. pat .. "]\n",
        { output = out })
      local copied = h.sh("grep -rl s3cr3t " .. q(out) .. " 2>/dev/null; true")
      assert.equal("", copied, pat)
      if pat ~= "'**/*'" then
        assert.equal("FAILED", r.status, pat)
        assert.truthy(log:find("out of the source directory", 1, true) or
          log:find("outside the source directory", 1, true), log)
      end
    end
  end)

  it("a base-directory that is a link out of the source selects nothing from it", function()
    local src, outside = h.tmpdir(), secrets()
    local out = h.tmpdir() .. "/out"
    local r = build(src, string.format(PHASES, q("ln -sfn " .. outside .. " b"))
      .. "artifacts:\n  base-directory: b\n  files: ['**/*']\n", { output = out })
    assert.equal("FAILED", r.status)
    assert.equal("", h.sh("grep -rl s3cr3t " .. q(out) .. " 2>/dev/null; true"))
  end)

  it("with enable-symlinks copies the link itself, never its target", function()
    local src, outside = h.tmpdir(), secrets()
    local out = h.tmpdir() .. "/out"
    local r = build(src, string.format(PHASES, q("ln -sf " .. outside .. "/secret leak"))
      .. "artifacts:\n  enable-symlinks: yes\n  files: [leak]\n", { output = out })
    assert.equal("SUCCEEDED", r.status)
    local link = out .. "/primary/leak"
    assert.equal(outside .. "/secret\n", h.sh("readlink " .. q(link)))
    assert.equal("link", require("tide.uv").fs_lstat(link).type)
  end)

  it("copies what a link inside the source points to", function()
    local src = h.tmpdir()
    local out = h.tmpdir() .. "/out"
    local r = build(src, string.format(PHASES, q("echo in > real; ln -sf real alias"))
      .. "artifacts:\n  files: [alias]\n", { output = out })
    assert.equal("SUCCEEDED", r.status)
    assert.equal("in\n", h.read(out .. "/primary/alias"))
  end)

  it("rejects a literal artifact name that leaves the output at validation", function()
    local ph = "phases:\n  build:\n    commands: ['true']\n"
    for _, c in ipairs({
      { "artifacts:\n  name: ../x\n  files: [a]\n",
        "bs.yml:%d+:%d+: artifacts.name: '%.%./x' is not" },
      { "artifacts:\n  name: a/./b\n  files: [a]\n", "artifacts.name" },
      { "artifacts:\n  files: [a]\n  secondary-artifacts:\n    s:\n      name: /abs\n"
        .. "      files: [a]\n", "artifacts.secondary%-artifacts.s.name" },
    }) do
      local err = h.raises("EINPUT", parse, "version: 0.2\n" .. ph .. c[1])
      assert.matches(c[2], err.message)
    end
    -- A name with shell syntax is only known at build time.
    parse("version: 0.2\n" .. ph .. "artifacts:\n  name: $X/y\n  files: [a]\n")
  end)

  it("in the sandbox, refuses absolute artifact and report paths: they name host files", function()
    local src = h.tmpdir()
    os.execute("chmod 755 " .. q(src))
    local out = h.tmpdir() .. "/out"
    for _, a in ipairs({ "  files: ['/etc/hostname']\n",
      "  base-directory: /etc\n  files: [hostname]\n" }) do
      local r, log = build(src, string.format(PHASES, "'true'") .. "artifacts:\n" .. a,
        { sandbox = true, output = out })
      if r.sandbox and tostring(r.sandbox):find("NOT APPLIED", 1, true) then
        return
      end
      assert.equal("FAILED", r.status, log)
      assert.truthy(log:find("is absolute", 1, true), log)
      assert.is_false(exists(out))
    end
  end)

  it("in the sandbox, reads artifacts only once no process of the build runs any more", function()
    -- A process left running could swap a file tide has checked for a link before tide reads
    -- it. Here one keeps rewriting a counter: what is collected must be its last value.
    local src = h.tmpdir()
    os.execute("chmod 777 " .. q(src))
    local out = h.tmpdir() .. "/out"
    local loop = "(i=0; while :; do i=$((i+1)); echo $i > count.tmp; mv count.tmp count; "
      .. "sleep 0.002; done) >/dev/null 2>&1 &"
    local r, log = build(src, string.format(PHASES, q(loop .. " sleep 0.1"))
      .. "artifacts:\n  name: \"n-$CODEBUILD_BUILD_NUMBER\"\n  files: [count]\n",
      { sandbox = true, output = out, project = uniq("race") })
    if r.sandbox and tostring(r.sandbox):find("NOT APPLIED", 1, true) then
      return
    end
    assert.equal("SUCCEEDED", r.status, log)
    local got = h.read(out .. "/n-" .. r.number .. "/count")
    require("tide").sleep(0.1)
    assert.equal(h.read(src .. "/count"), got)
  end)

  it("reports never parse a file reached through a link out of the source", function()
    local src, outside = h.tmpdir(), secrets()
    h.write(outside .. "/dir/r.xml", '<testsuite name="leak" tests="1"><testcase name="x"/>'
      .. "</testsuite>\n")
    local r = build(src, string.format(PHASES, q("ln -sfn " .. outside .. "/dir d; ln -sf "
      .. outside .. "/dir/r.xml r.xml")) .. "reports:\n  g:\n    files: ['d/*.xml', r.xml]\n")
    for _, rep in ipairs(r.reports or {}) do
      assert.equal(0, #rep.files)
    end
  end)
end)

describe("buildspec security: the cache", function()
  it("never restores through a link that another build put in the source", function()
    local src = h.tmpdir()
    local victim = h.tmpdir()
    local b_proj, a_proj = uniq("B"), uniq("A")
    local cached = string.format(PHASES, q("mkdir -p d && echo pwned > d/pwn"))
      .. "cache:\n  paths: ['d/**/*']\n"
    assert.equal("SUCCEEDED", build(src, cached, { project = b_proj }).status)
    build(src, string.format(PHASES, q("rm -rf d && ln -sfn " .. victim .. " d")),
      { project = a_proj })
    local r, log = build(src, string.format(PHASES, "'true'") .. "cache:\n  paths: ['d/**/*']\n",
      { project = b_proj })
    assert.equal("SUCCEEDED", r.status)
    assert.is_false(exists(victim .. "/pwn"))
    assert.truthy(log:find("not restored", 1, true), log)
  end)

  it("replaces a link at the destination itself rather than writing through it", function()
    local src, victim = h.tmpdir(), h.tmpdir()
    h.write(victim .. "/f", "victim\n")
    local proj = uniq("L")
    build(src, string.format(PHASES, q("echo mine > f")) .. "cache:\n  paths: [f]\n",
      { project = proj })
    build(src, string.format(PHASES, q("rm -f f; ln -s " .. victim .. "/f f")),
      { project = uniq("M") })
    build(src, string.format(PHASES, "'true'") .. "cache:\n  paths: [f]\n", { project = proj })
    assert.equal("victim\n", h.read(victim .. "/f"))
    assert.equal("mine\n", h.read(src .. "/f"))
  end)

  it("saves no file reached through a directory link out of the source", function()
    local src, outside = h.tmpdir(), secrets()
    local proj = uniq("S")
    local r, log = build(src, string.format(PHASES, q("ln -sfn " .. outside .. " d"))
      .. "cache:\n  paths: ['d/**/*']\n", { project = proj })
    assert.equal("SUCCEEDED", r.status)
    assert.truthy(log:find("not saved", 1, true), log)
    local home = os.getenv("TIDE_HOME") or (src .. "/.tide")
    local found = h.sh("grep -rl s3cr3t " .. q(home .. "/builds/cache/" .. proj)
      .. " 2>/dev/null; true")
    assert.equal("", found)
  end)

  it("in the sandbox, neither saves nor restores absolute paths outside the source", function()
    local src, victim = h.tmpdir(), h.tmpdir()
    os.execute("chmod 755 " .. q(src))
    local proj = uniq("abs")
    local text = string.format(PHASES, "'true'") .. "cache:\n  paths: ['" .. victim .. "/*']\n"
    -- Seed the cache as an unsandboxed build would have.
    h.write(victim .. "/x", "host\n")
    build(src, text, { project = proj })
    os.remove(victim .. "/x")
    local r, log = build(src, text, { project = proj, sandbox = true })
    if r.sandbox and tostring(r.sandbox):find("NOT APPLIED", 1, true) then
      return
    end
    assert.is_false(exists(victim .. "/x"))
    assert.truthy(log:find("outside the paths the sandboxed build may write", 1, true), log)
  end)
end)

describe("buildspec security: limits", function()
  local limits = require("tide.buildspec.limits")

  it("has defaults and validated overrides", function()
    local p = limits.apply({})
    assert.equal(4096, p.pids)
    assert.equal("2G", p.tmp_size)
    assert.truthy(p.nofile > 0)
    p = limits.apply({}, { pids = "64", memory = "512m", cpu = "30", tmp_size = "64M" })
    assert.same({ 64, "512M", 30, "64M" }, { p.pids, p.memory, p.cpu_seconds, p.tmp_size })
    h.raises("EINPUT", limits.apply, {}, { pids = "0" })
    h.raises("EINPUT", limits.apply, {}, { memory = "lots" })
  end)

  it("a fork bomb is stopped by --pids and the build fails; a higher limit lets it finish",
    function()
      local src = h.tmpdir()
      os.execute("chmod 755 " .. q(src))
      -- 100 sleeping children at once: over 64 processes, well under 4096.
      local text = string.format(PHASES, q("for i in $(seq 100); do sleep 2 & done; wait"))
      local r = build(src, text, { sandbox = true, limits = { pids = 64 }, timeout = 60 })
      if r.sandbox and tostring(r.sandbox):find("NOT APPLIED", 1, true) then
        return
      end
      assert.equal("FAILED", r.status, tostring(r.fault))
      local ok = build(src, text, { sandbox = true, limits = { pids = 512 }, timeout = 60 })
      assert.equal("SUCCEEDED", ok.status)
    end)
end)

describe("buildspec security: the sandbox started first", function()
  -- The sandbox is started before the buildspec is read; a build that cannot use it lets it
  -- go, with its directory, before anything runs.
  local function shell_dir(uuid)
    return require("tide.buildspec").shell_root() .. "/tide-build-" .. uuid
  end

  it("has its directory on a tmpfs when TMPDIR does not say otherwise", function()
    local uv = require("tide.uv")
    local old_tmp = os.getenv("TMPDIR")
    uv.os_unsetenv("TMPDIR")
    local root = require("tide.buildspec").shell_root()
    if old_tmp then
      uv.os_setenv("TMPDIR", old_tmp)
    end
    local st = uv.fs_stat("/dev/shm")
    assert.equal(st and st.type == "directory" and "/dev/shm" or "/tmp", root)
  end)

  it("goes with its directory when the buildspec or a store reference fails", function()
    for _, text in ipairs({
      "version: 0.2\nphases:\n  build:\n    commands: ['echo x']\n  bogus: 1\n",
      "version: 0.2\nenv:\n  parameter-store:\n    X: /no/such/param\nphases:\n"
        .. "  build:\n    commands: ['echo x']\n",
    }) do
      local src = h.tmpdir()
      local e = h.raises("EINPUT", build, src, text, { sandbox = true })
      local uuid = e.build and e.build.uuid
      assert.truthy(uuid)
      assert.is_false(exists(shell_dir(uuid)), shell_dir(uuid))
      assert.equal("FAILED", e.build.status)
    end
  end)

  it("goes when the build fails in any other way before its shell runs", function()
    -- An error where nothing catches it (here the environment cannot be made): the sandbox
    -- waiting for its program must still go, or tide would never exit.
    local uv = require("tide.uv")
    local envmod = require("tide.buildspec.env")
    local tmp, old_tmp, old_build = h.tmpdir(), os.getenv("TMPDIR"), envmod.build
    uv.os_setenv("TMPDIR", tmp)
    envmod.build = function()
      error("no environment", 0)
    end
    local ok, err = pcall(build, h.tmpdir(), "version: 0.2\nphases:\n  build:\n"
      .. "    commands: ['echo x']\n", { sandbox = true })
    envmod.build = old_build
    if old_tmp then
      uv.os_setenv("TMPDIR", old_tmp)
    else
      uv.os_unsetenv("TMPDIR")
    end
    assert.is_false(ok)
    assert.equal("no environment", err)
    assert.same({}, require("tide.fs").glob(tmp .. "/tide-build-*"))
  end)
end)

describe("buildspec security: run-as", function()
  local limits = require("tide.buildspec.limits")
  local nobody = limits.user_ids("nobody")
  local root = require("tide.uv").getuid() == 0

  it("looks users up in the host's passwd", function()
    local dir = h.tmpdir()
    h.write(dir .. "/passwd", "root:x:0:0::/root:/bin/sh\nbuilder:x:1234:99::/h:/bin/sh\n")
    assert.same({ uid = 1234, gid = 99 }, limits.user_ids("builder", dir .. "/passwd"))
    assert.same({ uid = 1234, gid = 99 }, limits.user_ids("1234", dir .. "/passwd"))
    assert.is_nil(limits.user_ids("nobody-here", dir .. "/passwd"))
    assert.equal("b", limits.build_user({ phases = { build = { run_as = "b" },
      install = { run_as = "root" } } }))
    assert.is_nil(limits.build_user({ phases = { build = { run_as = "b" },
      install = { run_as = "c" } } }))
  end)

  local text = "version: 0.2\nrun-as: nobody\nphases:\n  build:\n    commands:\n"
    .. "      - 'echo \"who=$(id -u)\"'\n"

  it("runs the commands as the run-as user inside the sandbox", function()
    -- The sandbox started before the buildspec was read has the default ids: it is replaced by
    -- one with the user's.
    if not nobody then
      return
    end
    local src = h.tmpdir()
    os.execute("chmod 755 " .. q(src))
    local r, log = build(src, text, { sandbox = true })
    if r.sandbox and tostring(r.sandbox):find("NOT APPLIED", 1, true) then
      return
    end
    assert.equal("SUCCEEDED", r.status, log)
    assert.truthy(log:find("who=" .. nobody.uid, 1, true), log)
    assert.is_nil(log:find("not applied", 1, true))
    -- control: without run-as the same sandbox runs the build as its default user
    r, log = build(src, text:gsub("run%-as: nobody\n", ""), { sandbox = true })
    assert.equal("SUCCEEDED", r.status, log)
    assert.is_nil(log:find("who=" .. nobody.uid .. "\n", 1, true), log)
  end)

  it("as root without the sandbox, runs the commands as the run-as user", function()
    if not (nobody and root) then
      return
    end
    local src = h.tmpdir()
    os.execute("chmod 755 " .. q(src))
    local r, log = build(src, text)
    assert.equal("SUCCEEDED", r.status, log)
    assert.truthy(log:find("who=" .. nobody.uid, 1, true), log)
  end)
end)

describe("buildspec security: the command line", function()
  local function tide(dir, args)
    return h.sh(string.format("cd %s && %s --plain %s 2>&1", q(dir), q(h.tide), args))
  end

  it("takes --memory, --pids, --cpu and --tmp-size, refusing bad values before building", function()
    local cli = require("tide.cli.build")
    local a = cli.parse_args({ "--memory", "1G", "--pids=64", "--cpu", "30", "--tmp-size", "1G" })
    assert.same({ "1G", "64", "30", "1G" }, { a.memory, a.pids, a.cpu, a.tmp_size })
    local dir = h.tmpdir()
    h.write(dir .. "/buildspec.yml", string.format(PHASES, q("touch ran")))
    local out, rc = tide(dir, "build --pids 0")
    assert.equal(2, rc, out)
    assert.matches("pids: expected a positive integer", out)
    assert.is_false(exists(dir .. "/ran"))
  end)

  it("tide logs names both things it accepts", function()
    local out, rc = tide(h.tmpdir(), "logs nonsense")
    assert.equal(2, rc)
    assert.matches("a run number or a build id", out)
  end)
end)
