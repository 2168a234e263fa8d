-- tide build / builds / show BUILD / logs BUILD, through the real binary.
local h = require("spec.helper")

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- Runs tide with args in dir (a fresh TIDE_HOME per test file); returns output and exit code.
local home = h.tmpdir() .. "/home"
local function tide(dir, args)
  return h.sh(string.format("cd %s && TIDE_HOME=%s %s --plain %s 2>&1", q(dir), q(home),
    q(h.tide), args))
end

local function project(text)
  local dir = h.tmpdir()
  h.write(dir .. "/buildspec.yml", text)
  return dir
end

describe("tide build", function()
  it("runs ./buildspec.yml and records the build, the run and per-phase logs", function()
    local dir = project("version: 0.2\nphases:\n  build:\n    commands: ['echo hi-from-build']\n")
    local out, rc = tide(dir, "build --no-sandbox --project web")
    assert.equal(0, rc)
    assert.truthy(out:find("hi-from-build", 1, true))
    local id = out:match("build (web:[%x-]+) #1 SUCCEEDED")
    assert.truthy(id)
    out, rc = tide(dir, "builds --project web")
    assert.equal(0, rc)
    assert.truthy(out:find(id, 1, true))
    out = tide(dir, "show " .. id)
    assert.matches("BUILD%s+SUCCEEDED", out)
    assert.matches("sandbox off", out)
    out = tide(dir, "logs " .. id .. " build")
    assert.truthy(out:find("hi-from-build", 1, true))
    assert.is_nil(out:find("[tide:", 1, true))
    out = tide(dir, "show web:1")
    assert.truthy(out:find(id, 1, true))
    local run = out:match("run (%d+)")
    out = tide(dir, "show " .. run)
    assert.matches("task%s+BUILD", out)
    assert.matches("proc%s+buildspec shell", out)
  end)

  it("takes -f, --src, --env and --output, and exits 1 on a failed build", function()
    local dir = h.tmpdir()
    os.execute("mkdir -p " .. dir .. "/ci " .. dir .. "/code")
    h.write(dir .. "/ci/spec.yml", "version: 0.2\nphases:\n  build:\n    commands:\n"
      .. "      - echo \"$GREETING\" > out.txt\n      - test \"$GREETING\" = hello\n"
      .. "artifacts:\n  files: [out.txt]\n")
    local _, rc = tide(dir, "build -f ci/spec.yml --src code --env GREETING=hello --output dist "
      .. "--no-sandbox")
    assert.equal(0, rc)
    assert.equal("hello\n", h.read(dir .. "/dist/primary/out.txt"))
    _, rc = tide(dir, "build -f ci/spec.yml --src code --env GREETING=bye --no-sandbox")
    assert.equal(1, rc)
  end)

  it("refuses bad input with exit 2, file, line and key, before running anything", function()
    local dir = project("version: 0.2\nphases:\n  build:\n    commands: ['touch ran']\n"
      .. "artifacts:\n  files: ['../up']\n")
    local out, rc = tide(dir, "build --no-sandbox --output dist")
    assert.equal(2, rc)
    assert.matches("buildspec%.yml:6:11: artifacts%.files%[1%]: '%.%./up' leaves the source", out)
    assert.is_nil(io.open(dir .. "/ran"))
    assert.is_nil(io.open(dir .. "/dist"))
    out, rc = tide(dir, "build --bogus")
    assert.equal(2, rc)
    assert.matches("unexpected argument '%-%-bogus'", out)
    h.write(dir .. "/buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands: ['ls'\n")
    out, rc = tide(dir, "build --no-sandbox")
    assert.equal(2, rc)
    assert.matches("buildspec%.yml:%d+:%d+:", out)
  end)

  it("never packs its own state directory (./.tide by default) into artifacts", function()
    local dir = project("version: 0.2\nphases:\n  build:\n    commands: ['echo x > f']\n"
      .. "artifacts:\n  files: ['**/*']\n")
    local out, rc = h.sh(string.format("cd %s && env -u TIDE_HOME %s --plain build --no-sandbox "
      .. "--output dist 2>&1", q(dir), q(h.tide)))
    assert.equal(0, rc, out)
    assert.truthy(io.open(dir .. "/.tide/state.db"))
    assert.truthy(io.open(dir .. "/dist/primary/f"))
    assert.is_nil(io.open(dir .. "/dist/primary/.tide/state.db"))
  end)

  it("builds sandboxed in the current directory, hiding the default ./.tide", function()
    -- the first command of the README: `tide build` in a project, by default in the sandbox
    local dir = project("version: 0.2\nphases:\n  build:\n    commands:\n"
      .. "      - 'cd $CODEBUILD_SRC_DIR && echo built > out.txt'\n"
      .. "      - 'echo \"home: $(ls -A .tide | wc -l)\"'\n"
      .. "artifacts:\n  files: ['out.txt']\n")
    local out, rc = h.sh(string.format("cd %s && env -u TIDE_HOME %s --plain build --output dist"
      .. " 2>&1", q(dir), q(h.tide)))
    assert.equal(0, rc, out)
    assert.matches("SUCCEEDED", out)
    assert.matches("home: 0", out) -- the commands see an empty, read-only ./.tide
    assert.truthy(io.open(dir .. "/.tide/state.db"))
    assert.equal("built\n", h.read(dir .. "/dist/primary/out.txt"))
  end)

  it("--plan validates and prints the plan without running", function()
    local dir = project("version: 0.2\nphases:\n  build:\n    commands: ['touch ran']\n")
    local out, rc = tide(dir, "build --plan")
    assert.equal(0, rc)
    assert.matches("BUILD: 1 command", out)
    assert.is_nil(io.open(dir .. "/ran"))
  end)

  it("sandboxes by default with the network off, and records it", function()
    local dir = project("version: 0.2\nphases:\n  build:\n    commands:\n"
      .. "      - 'echo \"ifaces=$(grep -c : /proc/net/dev)\"'\n")
    -- As root, sandboxed commands run as an unprivileged uid: the source must be readable.
    os.execute("chmod 755 " .. q(dir))
    local out, rc = tide(dir, "build --project sbx")
    assert.equal(0, rc, out)
    local id = out:match("build (sbx:[%x-]+)")
    local show = tide(dir, "show " .. id)
    if show:find("NOT APPLIED", 1, true) then
      assert.truthy(out:find("UNSANDBOXED", 1, true))
      return
    end
    assert.truthy(out:find("ifaces=1", 1, true))
    assert.matches("sandbox on, no network", show)
  end)

  it("Ctrl-C stops the build: STOPPED, exit 130", function()
    local dir = project("version: 0.2\nphases:\n  build:\n    commands: ['sleep 30']\n")
    local out = h.sh(string.format("cd %s && (TIDE_HOME=%s %s --plain build --no-sandbox "
      .. "--project stop >log 2>&1 & pid=$!; sleep 1; kill -INT $pid; wait $pid; echo rc=$?)",
      q(dir), q(home), q(h.tide)))
    assert.matches("rc=130", out)
    out = tide(dir, "builds --project stop")
    assert.matches("STOPPED", out)
  end)

  it("exits when a script fails right after a build, its shell still ending", function()
    -- The shell ends without being waited for; a script that fails at once cancels what was to
    -- wait for it. The shell must still be told to go, or tide waits for it forever.
    local dir = project("version: 0.2\nphases:\n  build:\n    commands: ['echo built']\n")
    h.write(dir .. "/fail.lua", "require('tide.buildspec').run({ src = arg[1], sandbox = false,"
      .. " quiet = true })\nerror('after the build')\n")
    local tmp = h.tmpdir()
    local out = h.sh(string.format("cd %s && TMPDIR=%s TIDE_HOME=%s timeout -s KILL 20 %s --plain "
      .. "fail.lua %s >log 2>&1; echo rc=$?; cat log", q(dir), q(tmp), q(home), q(h.tide), q(dir)))
    assert.matches("rc=1\n", out)
    assert.matches("after the build", out)
    -- and the shell's directory is gone: its removal does not wait for the shell's exit
    assert.same({}, require("tide.fs").glob(tmp .. "/tide-build-*"))
  end)

  it("exits 124 when the build times out", function()
    local dir = project("version: 0.2\nphases:\n  build:\n    commands: ['sleep 30']\n")
    local out, rc = tide(dir, "build --no-sandbox --timeout 1s")
    assert.equal(124, rc)
    assert.matches("TIMED_OUT", out)
  end)
end)
