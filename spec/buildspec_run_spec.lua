-- tide.buildspec.run: phases, transitions, statuses, the one shell, the environment; the
-- luacheck: ignore 631 (buildspecs written out in full)
-- CodeBuild conformance items of the reference (§11), run with real shells.
local h = require("spec.helper")
local tide = require("tide")
local bs = require("tide.buildspec")

-- A name no earlier run of this spec used (ctest keeps each spec's TIDE_HOME between runs).
local function uniq(name)
  return string.format("%s-%08x", name, math.random(0, 0x7fffffff))
end

--- Writes text as SRC/buildspec.yml in a fresh source directory and runs it without the
--- sandbox (as root, sandboxed commands cannot write to the source: see buildspec_cli_spec).
--- Returns the result, the output lines and the source directory.
local function build(text, opts)
  local src = opts and opts.src or h.tmpdir()
  h.write(src .. "/buildspec.yml", text)
  local lines = {}
  local o = { src = src, sandbox = false, project = "p",
    on_line = function(l) lines[#lines + 1] = l end }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  local r = bs.run(o)
  return r, lines, src
end

local function phase(r, ptype)
  for _, p in ipairs(r.phases) do
    if p.type == ptype then
      return p
    end
  end
end

local function types(r)
  local t = {}
  for _, p in ipairs(r.phases) do
    t[#t + 1] = p.type
  end
  return table.concat(t, " ")
end

local function has(lines, text)
  for _, l in ipairs(lines) do
    if l == text then
      return true
    end
  end
  return false
end

describe("buildspec phases (reference §11)", function()
  it("1: a failed build still runs post_build, which sees CODEBUILD_BUILD_SUCCEEDING=0", function()
    local r, lines = build([[
version: 0.2
phases:
  build:
    commands:
      - exit 1
  post_build:
    commands:
      - echo "succeeding=$CODEBUILD_BUILD_SUCCEEDING"
]])
    assert.equal("FAILED", r.status)
    assert.equal("FAILED", phase(r, "BUILD").status)
    assert.equal("SUCCEEDED", phase(r, "POST_BUILD").status)
    assert.is_truthy(phase(r, "UPLOAD_ARTIFACTS"))
    assert.is_true(has(lines, "succeeding=0"))
    assert.equal("COMMAND_EXECUTION_ERROR", phase(r, "BUILD").contexts[1].statusCode)
    assert.matches("exit 1%. Reason: exit status 1", phase(r, "BUILD").contexts[1].message)
  end)

  it("2: a failed pre_build skips build, post_build and upload", function()
    local r, lines = build([[
version: 0.2
phases:
  pre_build:
    commands: ["false"]
  build:
    commands: ["echo never"]
  post_build:
    commands: ["echo never"]
]])
    assert.equal("FAILED", r.status)
    assert.equal("SUBMITTED QUEUED PROVISIONING DOWNLOAD_SOURCE INSTALL PRE_BUILD FINALIZING COMPLETED",
      types(r))
    assert.is_false(has(lines, "never"))
  end)

  it("3: a failed install goes straight to FINALIZING", function()
    local r = build("version: 0.2\nphases:\n  install:\n    commands: ['false']\n"
      .. "  build:\n    commands: ['true']\n")
    assert.equal("SUBMITTED QUEUED PROVISIONING DOWNLOAD_SOURCE INSTALL FINALIZING COMPLETED",
      types(r))
  end)

  it("4: commands after the first failure are skipped, finally runs", function()
    local r, lines = build([[
version: 0.2
phases:
  build:
    commands: ["false", "echo skipped"]
    finally: ["echo cleanup"]
]])
    assert.is_false(has(lines, "skipped"))
    assert.is_true(has(lines, "cleanup"))
    assert.equal("FAILED", phase(r, "BUILD").status)
    assert.equal(1, phase(r, "BUILD").commands[1].code)
    assert.is_nil(phase(r, "BUILD").commands[2])
    assert.equal(0, phase(r, "BUILD").finally[1].code)
  end)

  it("5: a failing finally fails the phase; later finally items are skipped", function()
    local r, lines = build([[
version: 0.2
phases:
  build:
    commands: ["true"]
    finally: ["false", "echo after"]
]])
    assert.equal("FAILED", phase(r, "BUILD").status)
    assert.equal("FAILED", r.status)
    assert.is_false(has(lines, "after"))
  end)

  it("6: on-failure CONTINUE goes on to the next phase; the build still fails", function()
    local r, lines = build([[
version: 0.2
phases:
  pre_build:
    on-failure: CONTINUE
    commands: ["false"]
  build:
    commands: ["echo built $CODEBUILD_BUILD_SUCCEEDING"]
]])
    assert.equal("SUCCEEDED", phase(r, "BUILD").status)
    assert.is_true(has(lines, "built 0"))
    assert.equal("FAILED", r.status)
  end)

  it("7: on-failure ABORT on build skips post_build and upload", function()
    local r, lines = build([[
version: 0.2
phases:
  build:
    on-failure: ABORT
    commands: ["false"]
  post_build:
    commands: ["echo post"]
]])
    assert.is_nil(phase(r, "POST_BUILD"))
    assert.is_nil(phase(r, "UPLOAD_ARTIFACTS"))
    assert.is_false(has(lines, "post"))
    assert.equal("FAILED", r.status)
  end)

  it("8: version 0.2 keeps cd and export across commands and phases", function()
    local src = h.tmpdir()
    os.execute("mkdir " .. src .. "/subdir")
    local _, lines = build([[
version: 0.2
phases:
  install:
    commands: ["cd subdir", "export A=1", "B=plain"]
  build:
    commands: ["pwd", "echo A=$A B=$B"]
]], { src = src })
    assert.is_true(has(lines, src .. "/subdir"))
    assert.is_true(has(lines, "A=1 B=plain"))
  end)

  it("8: version 0.1 runs every command in its own shell", function()
    local src = h.tmpdir()
    os.execute("mkdir " .. src .. "/subdir")
    local _, lines = build([[
version: 0.1
phases:
  build:
    commands: ["cd subdir", "export A=1", "pwd", "echo A=$A"]
]], { src = src })
    assert.is_true(has(lines, src))
    assert.is_true(has(lines, "A="))
  end)

  it("9: env.variables are literal", function()
    local _, lines = build([[
version: 0.2
env:
  variables:
    PATH2: "$PATH:/x"
    CI: true
phases:
  build:
    commands: ['echo "$PATH2 $CI"']
]])
    assert.is_true(has(lines, "$PATH:/x true"))
  end)

  it("10: overrides win over buildspec variables", function()
    local _, lines = build([[
version: 0.2
env:
  variables:
    A: spec
    B: spec
phases:
  build:
    commands: ['echo "$A $B"']
]], { env = { A = "override" } })
    assert.is_true(has(lines, "override spec"))
  end)

  it("13: exported variables take their last value, up to post_build", function()
    local r = build([[
version: 0.2
env:
  exported-variables: [X, Y, UNSET, AWS_REGION]
phases:
  install:
    commands: ["export X=install Y=y AWS_REGION=r"]
  post_build:
    commands: ["export X=post"]
]])
    assert.same({ X = "post", Y = "y" }, r.exported)
  end)

  it("a command that ends the shell fails; the state carries to the next shell", function()
    local src = h.tmpdir()
    os.execute("mkdir " .. src .. "/d")
    local r, lines = build([[
version: 0.2
phases:
  build:
    commands: ["cd d && export K=v", "exit 7", "echo never"]
    finally: ["echo finally $K $(basename $PWD)"]
  post_build:
    commands: ["set -e; false; echo never2", "echo post $K"]
]], { src = src })
    assert.equal(7, phase(r, "BUILD").commands[2].code)
    assert.is_true(has(lines, "finally v d"))
    assert.is_false(has(lines, "never"))
    assert.is_false(has(lines, "never2"))
    assert.equal("FAILED", phase(r, "POST_BUILD").status)
  end)

  it("a multi-line command fails only by its last line", function()
    local r = build([[
version: 0.2
phases:
  build:
    commands:
      - |
        false
        true
]])
    assert.equal("SUCCEEDED", r.status)
  end)

  it("commands read /dev/null, not the build's own input", function()
    local _, lines = build("version: 0.2\nphases:\n  build:\n    commands: ['cat; echo read:$?']\n"
      .. "  post_build:\n    commands: ['echo post']\n")
    assert.is_true(has(lines, "read:0"))
    assert.is_true(has(lines, "post"))
  end)

  it("uses bash when env.shell says so", function()
    local _, lines = build("version: 0.2\nenv:\n  shell: bash\nphases:\n  build:\n"
      .. "    commands: ['[[ 1 == 1 ]] && echo bash:${BASH_VERSION%%.*}']\n")
    local found
    for _, l in ipairs(lines) do
      found = found or l:match("^bash:%d+$")
    end
    assert.truthy(found)
  end)

  it("records phases with status, start, end and duration, and per-phase logs", function()
    local r = build("version: 0.2\nphases:\n  build:\n    commands: ['echo hello-log']\n")
    local b = phase(r, "BUILD")
    assert.is_true(b["end"] >= b.start)
    assert.is_true(b.duration >= 0)
    assert.equal("SUCCEEDED", r.status)
    local log = h.read(r.log_dir .. "/BUILD.log")
    assert.truthy(log:find("hello-log", 1, true))
    assert.truthy(log:find("[Container] Entering phase BUILD", 1, true))
  end)

  it("times out: the running phase and the build are TIMED_OUT, the tree is killed", function()
    local src = h.tmpdir()
    local t0 = tide.monotime()
    local r = build([[
version: 0.2
phases:
  build:
    commands: ["(sleep 1; touch late) & sleep 30"]
  post_build:
    commands: ["echo post"]
]], { src = src, timeout = 0.3 })
    assert.is_true(tide.monotime() - t0 < 10)
    assert.equal("TIMED_OUT", r.status)
    assert.equal("TIMED_OUT", phase(r, "BUILD").status)
    assert.is_nil(phase(r, "POST_BUILD"))
    assert.is_truthy(phase(r, "FINALIZING"))
    -- The background job went with the shell's process group.
    tide.sleep(1.5)
    assert.is_nil(io.open(src .. "/late"))
  end)

  it("is STOPPED when its task is cancelled", function()
    local src = h.tmpdir()
    h.write(src .. "/buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands: ['sleep 30']\n")
    local project = uniq("stopped")
    local task = tide.spawn(function()
      return bs.run({ src = src, sandbox = false, project = project, quiet = true })
    end)
    tide.sleep(0.5)
    task:cancel()
    local ok = pcall(task.wait, task)
    assert.is_false(ok)
    local rec = bs.records.list(project, 1)[1]
    assert.equal("STOPPED", rec.status)
  end)
end)

describe("buildspec environment", function()
  it("21: sets the CODEBUILD_* variables with a local meaning", function()
    local r, lines = build([[
version: 0.2
phases:
  build:
    commands:
      - echo "id=$CODEBUILD_BUILD_ID"
      - echo "arn=$CODEBUILD_BUILD_ARN"
      - echo "start=$CODEBUILD_START_TIME"
      - echo "src=$CODEBUILD_SRC_DIR"
      - echo "n=$CODEBUILD_BUILD_NUMBER"
      - echo "ok=$CODEBUILD_BUILD_SUCCEEDING"
      - echo "init=$CODEBUILD_INITIATOR"
]], { project = "web" })
    local got = {}
    for _, l in ipairs(lines) do
      local k, v = l:match("^(%w+)=(.*)$")
      if k then
        got[k] = v
      end
    end
    assert.matches("^web:%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", got.id)
    assert.equal(r.id, got.id)
    assert.equal("arn:aws:codebuild:local:000000000000:build/" .. r.id, got.arn)
    assert.matches("^%d%d%d%d%d%d%d%d%d%d%d%d%d$", got.start)
    assert.equal(r.src, got.src)
    assert.equal(tostring(r.number), got.n)
    assert.equal("1", got.ok)
    assert.truthy(#got.init > 0)
  end)

  it("exports CODEBUILD_BUILD_NUMBER to children, also from a shell started later", function()
    -- exit 0 ends the shell: the next command runs in a new one, from the saved state.
    local r, lines = build([[
version: 0.2
phases:
  build:
    commands:
      - sh -c 'echo "child=$CODEBUILD_BUILD_NUMBER"'
      - exit 0
      - sh -c 'echo "later=$CODEBUILD_BUILD_NUMBER"'
]], { project = "num" })
    assert.equal("SUCCEEDED", r.status)
    local text = "\n" .. table.concat(lines, "\n") .. "\n"
    assert.truthy(text:find("\nchild=" .. r.number .. "\n", 1, true), text)
    assert.truthy(text:find("\nlater=" .. r.number .. "\n", 1, true), text)
  end)

  it("numbers builds per project from 1", function()
    local src = h.tmpdir()
    local text = "version: 0.2\nphases:\n  build:\n    commands: ['true']\n"
    local p1, p2 = uniq("numbered"), uniq("other")
    local a = build(text, { src = src, project = p1 })
    local b = build(text, { src = src, project = p1 })
    local c = build(text, { src = src, project = p2 })
    assert.equal(1, a.number)
    assert.equal(2, b.number)
    assert.equal(1, c.number)
  end)

  it("names the missing parameter or secret with file, line and key, before any command", function()
    local src = h.tmpdir()
    local missing = uniq("/ci/token")
    local err = h.raises("EINPUT", build, ([[
version: 0.2
env:
  parameter-store:
    TOKEN: %s
phases:
  build:
    commands: ["touch ran"]
]]):format(missing), { src = src })
    assert.matches("^buildspec%.yml:4: env%.parameter%-store%.TOKEN: parameter '"
      .. missing:gsub("%p", "%%%0") .. "'", err.message)
    assert.is_nil(io.open(src .. "/ran"))
    assert.equal("FAILED", err.build.status)
    err = h.raises("EINPUT", build, ([[
version: 0.2
env:
  secrets-manager:
    V: "%s:password"
phases:
  build:
    commands: ["touch ran"]
]]):format(uniq("MySecret")), { src = src })
    assert.matches("^buildspec%.yml:4: env%.secrets%-manager%.V: secret 'MySecret", err.message)
    assert.is_nil(io.open(src .. "/ran"))
  end)

  local have_stores = pcall(require, "tide.secrets") and pcall(require, "tide.params")

  it("11: a secrets-manager json key resolves, and its value is masked everywhere", function()
    if not have_stores then
      pending("tide.secrets is not in this tide")
      return
    end
    local secrets = require("tide.secrets")
    local name = uniq("MySecret")
    secrets.put_value(name, '{"password":"pw-9f3k2","user":"u"}')
    local r, lines = build([[
version: 0.2
env:
  secrets-manager:
    V: "]] .. name .. [[:password"
  exported-variables: [V]
phases:
  build:
    commands:
      - 'test "$V" = pw-9f3k2 && echo matched'
      - echo "$V"
      - echo pw-9f3k2 again
]])
    assert.equal("SUCCEEDED", r.status)
    assert.is_true(has(lines, "matched"))
    assert.is_true(has(lines, "***"))
    assert.is_true(has(lines, "*** again"))
    assert.equal("***", r.exported.V)
    for _, l in ipairs(lines) do
      assert.is_nil(l:find("pw-9f3k2", 1, true))
    end
    local log = h.read(r.log_dir .. "/BUILD.log")
    assert.is_nil(log:find("pw-9f3k2", 1, true))
    -- The run's own log of the build shell too.
    require("tide._runtime").flush()
    local found = false
    for _, s in ipairs(require("tide._store").spans(r.run_id)) do
      if s.name == "buildspec shell" and s.log then
        found = true
        assert.is_nil(h.read(s.log):find("pw-9f3k2", 1, true))
      end
    end
    assert.is_true(found)
  end)

  it("12: a version stage selects that version", function()
    if not have_stores then
      pending("tide.secrets is not in this tide")
      return
    end
    local secrets = require("tide.secrets")
    local name = uniq("Rotated")
    secrets.put_value(name, "old-value-1")
    secrets.put_value(name, "new-value-2")
    local _, lines = build([[
version: 0.2
env:
  secrets-manager:
    V: "]] .. name .. [[::AWSPREVIOUS"
phases:
  build:
    commands: ['test "$V" = old-value-1 && echo previous']
]])
    assert.is_true(has(lines, "previous"))
  end)

  it("resolves parameter-store names, masking SecureString values", function()
    if not have_stores then
      pending("tide.params is not in this tide")
      return
    end
    local params = require("tide.params")
    local plain, secure = uniq("/ci/plain"), uniq("/ci/secure")
    params.put(plain, "plain-value")
    params.put(secure, "secure-7d1", { type = "SecureString" })
    local _, lines = build([[
version: 0.2
env:
  parameter-store:
    P: ]] .. plain .. [[

    S: ]] .. secure .. [[

phases:
  build:
    commands: ['echo "$P $S"', 'test "$S" = secure-7d1 && echo ok']
]])
    assert.is_true(has(lines, "plain-value ***"))
    assert.is_true(has(lines, "ok"))
  end)

  it("20: an invalid buildspec fails in DOWNLOAD_SOURCE with YAML_FILE_ERROR", function()
    local err = h.raises("EINPUT", build, "version: 0.2\nphases: [\n")
    local b = err.build
    local d = phase(b, "DOWNLOAD_SOURCE")
    assert.equal("FAILED", d.status)
    assert.equal("YAML_FILE_ERROR", d.contexts[1].statusCode)
    assert.equal("FAILED", b.status)
  end)

  it("records runtime-versions and checks them without installing", function()
    local r = build([[
version: 0.2
phases:
  install:
    runtime-versions:
      nodejs: 9999
]])
    assert.equal("SUCCEEDED", r.status)
    assert.equal("nodejs", r.runtimes[1].name)
    assert.is_false(r.runtimes[1].ok)
    assert.truthy(r.warnings[1]:find("does not install runtimes", 1, true))
  end)

  it("accepts proxy and git-credential-helper and reports them as not applicable", function()
    local r, lines = build([[
version: 0.2
proxy:
  upload-artifacts: yes
env:
  git-credential-helper: yes
phases:
  build:
    commands: ["true"]
]])
    assert.equal("SUCCEEDED", r.status)
    assert.same({ "proxy", "env.git-credential-helper" }, r.not_applicable)
    assert.is_true(has(lines, "[tide] proxy: accepted; not applicable to a local build"))
  end)
end)

describe("buildspec git source", function()
  local ok_git = pcall(require, "tide.git")

  it("checks out URL@rev and sets the source variables", function()
    if not ok_git then
      pending("tide.git is not in this tide")
      return
    end
    local repo = h.tmpdir()
    h.write(repo .. "/buildspec.yml", "version: 0.2\nenv:\n  exported-variables: [R, S]\n"
      .. "phases:\n  build:\n    commands:\n"
      .. "      - export R=$CODEBUILD_RESOLVED_SOURCE_VERSION S=$CODEBUILD_SOURCE_VERSION\n"
      .. "      - cat hello.txt\n")
    h.write(repo .. "/hello.txt", "from-git\n")
    local _, rc = h.sh("cd " .. repo .. " && git init -q -b main && git add . && "
      .. "git -c user.email=t@t -c user.name=t commit -qm one && git rev-parse HEAD > /dev/null")
    assert.equal(0, rc)
    local head = h.sh("cd " .. repo .. " && git rev-parse HEAD"):match("%x+")
    local lines = {}
    local r = bs.run({ git = repo .. "@main", sandbox = false, project = "g",
      on_line = function(l) lines[#lines + 1] = l end })
    assert.equal("SUCCEEDED", r.status)
    assert.same({ R = head, S = "main" }, r.exported)
    assert.is_true(has(lines, "from-git"))
    local bad = bs.run({ git = repo .. "@no-such-rev", sandbox = false, project = "g",
      quiet = true })
    assert.equal("FAILED", bad.status)
    assert.equal("FAILED", phase(bad, "DOWNLOAD_SOURCE").status)
  end)

  it("splits URL@rev", function()
    assert.same({ "https://h/r.git", "v1.2" }, { bs.split_git("https://h/r.git@v1.2") })
    assert.same({ "git@h:o/r.git" }, { bs.split_git("git@h:o/r.git") })
    assert.same({ "git@h:o/r.git", "feature/x" }, { bs.split_git("git@h:o/r.git@feature/x") })
    assert.same({ "https://user@h/r" }, { bs.split_git("https://user@h/r") })
  end)
end)

describe("buildspec shell: phases sent together", function()
  local function index_of(lines, text)
    for i, l in ipairs(lines) do
      if l == text then
        return i
      end
    end
  end

  for _, sh in ipairs({ "sh", "bash" }) do
    it("keeps each phase's output in its own log and in order (" .. sh .. ")", function()
      local r, lines = build("version: 0.2\nenv:\n  shell: " .. sh .. "\nphases:\n"
        .. "  install:\n    commands: ['echo in-install', 'echo in-install-2']\n"
        .. "  pre_build:\n    commands: ['echo in-pre']\n"
        .. "  build:\n    commands: ['echo in-build']\n    finally: ['echo in-build-finally']\n"
        .. "  post_build:\n    commands: ['echo in-post']\n")
      assert.equal("SUCCEEDED", r.status)
      local order = { "in-install", "in-install-2", "in-pre", "in-build", "in-build-finally",
        "in-post" }
      for i = 2, #order do
        assert.is_true(index_of(lines, order[i - 1]) < index_of(lines, order[i]), order[i])
      end
      local logs = { INSTALL = "in-install-2", PRE_BUILD = "in-pre", BUILD = "in-build-finally",
        POST_BUILD = "in-post" }
      for ptype, word in pairs(logs) do
        local log = h.read(r.log_dir .. "/" .. ptype .. ".log")
        assert.truthy(log:find("\n" .. word .. "\n", 1, true), ptype)
        assert.truthy(log:find("Entering phase " .. ptype, 1, true), ptype)
        for other, w in pairs(logs) do
          if other ~= ptype then
            assert.falsy(log:find("\n" .. w .. "\n", 1, true), ptype .. " has " .. w)
          end
        end
      end
      for _, ptype in ipairs({ "INSTALL", "PRE_BUILD", "BUILD", "POST_BUILD" }) do
        local p = phase(r, ptype)
        assert.equal("SUCCEEDED", p.status)
        assert.is_true(p["end"] >= p.start)
      end
      assert.equal(0, phase(r, "INSTALL").commands[2].code)
      assert.equal(0, phase(r, "BUILD").finally[1].code)
    end)
  end

  it("logs what a command writes to the shell's wake-up descriptor, and survives its closing",
    function()
      local r, lines = build("version: 0.2\nenv:\n  shell: bash\nphases:\n"
        .. "  install:\n    commands: ['echo side >&8; echo main', 'exec 8>&-', 'echo after']\n"
        .. "  build:\n    commands: ['echo in-build']\n")
      assert.equal("SUCCEEDED", r.status)
      for _, want in ipairs({ "side", "main", "after", "in-build" }) do
        assert.truthy(index_of(lines, want), want)
      end
    end)

  it("keeps a log file only for the phases that logged something", function()
    -- install fails and ends the phases: PRE_BUILD..UPLOAD_ARTIFACTS never run, so no file
    -- (DOWNLOAD_SOURCE has the note that the sandbox is off).
    local r = build("version: 0.2\nphases:\n  install:\n    commands: ['false']\n"
      .. "  pre_build:\n    commands: ['echo p']\n  build:\n    commands: ['echo b']\n")
    assert.equal("FAILED", r.status)
    local names = {}
    for _, f in ipairs(require("tide.fs").glob(r.log_dir .. "/*")) do
      names[#names + 1] = f:match("([^/]+)$")
    end
    table.sort(names)
    assert.same({ "DOWNLOAD_SOURCE.log", "FINALIZING.log", "INSTALL.log" }, names)
    assert.truthy(h.read(r.log_dir .. "/FINALIZING.log"):find("[tide] build ", 1, true))
  end)

  it("stops the shell where a failure stops the build, before the next phase runs", function()
    local r, lines = build([[
version: 0.2
phases:
  install:
    commands: ["echo ok"]
  pre_build:
    commands: ["echo pre", "false", "echo skipped"]
    finally: ["echo pre-finally"]
  build:
    commands: ["echo never-built"]
  post_build:
    commands: ["echo never-post"]
]])
    assert.equal("FAILED", r.status)
    assert.is_true(has(lines, "pre-finally"))
    assert.is_false(has(lines, "skipped"))
    assert.is_false(has(lines, "never-built"))
    assert.is_false(has(lines, "never-post"))
    local pre = phase(r, "PRE_BUILD")
    assert.same({ 0, 1 }, { pre.commands[1].code, pre.commands[2].code })
    assert.is_nil(pre.commands[3])
    assert.is_true(index_of(lines, "[Container] Command did not exit successfully false exit "
      .. "status 1") < index_of(lines, "pre-finally"))
  end)

  -- A buildspec run by shell sh (phases: the text under `phases:`).
  local function in_shell(sh, phases)
    return "version: 0.2\nenv:\n  shell: " .. sh .. "\nphases:\n" .. phases
  end

  for _, sh in ipairs({ "sh", "bash" }) do
    it("prints each command as written, quotes, % and backslashes included (" .. sh .. ")",
      function()
        -- tide writes the line from its own copy of the command; the shell only tags the
        -- place, so backslashes stay even once a command has turned xpg_echo on.
        local text = in_shell(sh, [[
  build:
    commands:
      - echo "it's 100% \\ done"
      - 'printf "%s\n" a%%b'
      - 'shopt -s xpg_echo 2>/dev/null || true'
      - 'true \t\n'
]])
        local r, lines = build(text)
        assert.equal("SUCCEEDED", r.status)
        assert.is_true(has(lines, [[[Container] Running command echo "it's 100% \\ done"]]))
        assert.is_true(has(lines, "it's 100% \\ done"))
        assert.is_true(has(lines, [[[Container] Running command printf "%s\n" a%%b]]))
        assert.is_true(has(lines, "a%%b"))
        assert.is_true(has(lines, [[[Container] Running command true \t\n]]))
      end)
  end

  for _, sh in ipairs({ "sh", "bash" }) do
    it("parses each command alone: an unclosed quote or a stray keyword fails only its own ("
      .. sh .. ")", function()
      -- Plain words run as written in the script, anything else through eval: were these two
      -- written in as they are, the quote would swallow the lines after it.
      local text = in_shell(sh, [[
  install:
    on-failure: CONTINUE
    commands:
      - echo plain-words ./a_b:c,d=e+f@g
      - echo "unclosed
  pre_build:
    on-failure: CONTINUE
    commands:
      - fi
  build:
    commands:
      - echo after-all
      - 'for w in x y; do echo "w=$w"; done'
]])
      local r, lines = build(text)
      local install, pre, b = phase(r, "INSTALL"), phase(r, "PRE_BUILD"), phase(r, "BUILD")
      assert.equal("FAILED", install.status)
      assert.equal(0, install.commands[1].code)
      assert.is_true(install.commands[2].code ~= 0)
      assert.equal("FAILED", pre.status)
      assert.is_true(pre.commands[1].code ~= 0)
      assert.equal("SUCCEEDED", b.status)
      assert.same({ 0, 0 }, { b.commands[1].code, b.commands[2].code })
      assert.is_true(has(lines, "plain-words ./a_b:c,d=e+f@g"))
      assert.is_true(has(lines, "[Container] Running command echo \"unclosed"))
      assert.is_true(has(lines, "after-all"))
      assert.is_true(has(lines, "w=y"))
    end)
  end

  for _, sh in ipairs({ "sh", "bash" }) do
    it("fails a command that returns from or continues past the build's script, and goes on ("
      .. sh .. ")", function()
      local text = in_shell(sh, [[
  install:
    on-failure: CONTINUE
    commands:
      - export KEPT=yes
      - return 0
      - echo never-install
  pre_build:
    on-failure: CONTINUE
    commands:
      - continue
  build:
    commands:
      - echo "kept=$KEPT"
]])
      local r, lines = build(text)
      local install, pre = phase(r, "INSTALL"), phase(r, "PRE_BUILD")
      assert.equal("FAILED", install.status)
      assert.same({ 0, 2 }, { install.commands[1].code, install.commands[2].code })
      assert.is_nil(install.commands[3])
      assert.equal("FAILED", pre.status)
      assert.equal(2, pre.commands[1].code)
      assert.equal("SUCCEEDED", phase(r, "BUILD").status)
      assert.is_false(has(lines, "never-install"))
      assert.is_true(has(lines, "kept=yes"))
      assert.is_true(has(lines, "tide: a script of the build shell ended early"))
    end)
  end

  for _, sh in ipairs({ "sh", "bash" }) do
    it("runs a short script written over a longer one only once (" .. sh .. ")", function()
      local shell = require("tide.buildspec.shell")
      local dir, lines = h.tmpdir(), {}
      local s = shell.new({ dir = dir, shell = sh, env = {}, cwd = dir,
        on_line = function(l) lines[#lines + 1] = l end })
      local long = {}
      for i = 1, 50 do
        long[i] = "echo a" .. i
      end
      -- Two files in turn: the third script goes over the first, and is shorter.
      assert.equal("done", s:exec(table.concat(long, "\n")))
      assert.equal("done", s:exec("echo b"))
      assert.equal("done", s:exec("echo c"))
      assert.equal("done", s:exec("echo d"))
      s:close()
      local n = 0
      for _, l in ipairs(lines) do
        n = n + (l == "a50" and 1 or 0)
      end
      assert.equal(1, n)
      assert.same({ "b", "c", "d" }, { lines[51], lines[52], lines[53] })
    end)
  end

  it("does not run the phases sent after one whose failure stops the build", function()
    local shell = require("tide.buildspec.shell")
    local dir, lines = h.tmpdir(), {}
    local s = shell.new({ dir = dir, shell = "sh", env = {}, cwd = dir, version = "0.2",
      on_line = function(l) lines[#lines + 1] = l end })
    local pre = { type = "PRE_BUILD", commands = { "false" }, finally = {} }
    local nxt = { type = "BUILD", commands = { "echo never" }, finally = {} }
    local r = s:run_phase(pre, true, { stops = true, { ph = nxt, stops = false } })
    assert.equal("FAILED", r.status)
    assert.equal("done", s:exec("echo after"))
    s:close()
    assert.is_true(has(lines, "after"))
    assert.is_false(has(lines, "never"))
    -- control: when the failure does not stop the build, the next phase runs in the same script
    lines = {}
    s = shell.new({ dir = dir, shell = "sh", env = {}, cwd = dir, version = "0.2",
      on_line = function(l) lines[#lines + 1] = l end })
    r = s:run_phase(pre, true, { stops = false, { ph = nxt, stops = false } })
    assert.equal("FAILED", r.status)
    local r2 = s:run_phase(nxt, false, {})
    s:close()
    assert.equal("SUCCEEDED", r2.status)
    assert.is_true(has(lines, "never"))
  end)
end)
