-- tide.buildspec: artifacts, the local cache and report groups.
-- luacheck: ignore 631 (buildspecs written out in full)
local h = require("spec.helper")
local bs = require("tide.buildspec")

-- A name no earlier run of this spec used (ctest keeps each spec's TIDE_HOME between runs).
local function uniq(name)
  return string.format("%s-%08x", name, math.random(0, 0x7fffffff))
end

local function build(src, text, opts)
  h.write(src .. "/buildspec.yml", text)
  local o = { src = src, sandbox = false, project = "p", quiet = true }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  return bs.run(o)
end

local function tree(dir)
  local out, rc = h.sh("cd " .. dir .. " && find . -type f -o -type l | sort")
  assert.equal(0, rc)
  local list = {}
  for l in out:gmatch("[^\n]+") do
    list[#list + 1] = l:sub(3)
  end
  return list
end

-- The reference's worked example.
local function example(src)
  h.sh("cd " .. src .. " && mkdir -p my-build-1 my-build-2/my-subdirectory && "
    .. "echo 1 > my-build-1/my-file-1.txt && echo 2 > my-build-2/my-file-2.txt && "
    .. "echo 3 > my-build-2/my-subdirectory/my-file-3.txt")
end

local PHASES = "phases:\n  build:\n    commands: ['true']\n"

describe("buildspec artifacts", function()
  it("14: base-directory pattern with discard-paths flattens to the three files", function()
    local src, out = h.tmpdir(), h.tmpdir() .. "/out"
    example(src)
    local r = build(src, "version: 0.2\n" .. PHASES .. "artifacts:\n  files: ['**/*']\n"
      .. "  base-directory: 'my-build*'\n  discard-paths: yes\n", { output = out })
    assert.equal("SUCCEEDED", r.status)
    assert.same({ "my-file-1.txt", "my-file-2.txt", "my-file-3.txt" }, tree(out .. "/primary"))
  end)

  it("15: a base-directory's own name is not part of the paths", function()
    local src, out = h.tmpdir(), h.tmpdir() .. "/out"
    example(src)
    build(src, "version: 0.2\n" .. PHASES .. "artifacts:\n  files: ['*/my-file-3.txt']\n"
      .. "  base-directory: my-build-2\n", { output = out })
    assert.same({ "my-subdirectory/my-file-3.txt" }, tree(out .. "/primary"))
  end)

  it("records the sha256 of every file, as sha256sum computes it", function()
    local src, out = h.tmpdir(), h.tmpdir() .. "/out"
    example(src)
    local r = build(src, "version: 0.2\n" .. PHASES .. "artifacts:\n  files: ['my-build-2/**/*']\n",
      { output = out })
    local a = r.artifacts[1]
    assert.equal(2, #a.files)
    for _, f in ipairs(a.files) do
      local sum = h.sh("sha256sum " .. src .. "/" .. f.path):match("^(%x+)")
      assert.equal(sum, f.sha256)
    end
    -- Also in the record.
    local rec = bs.records.get(r.id)
    assert.equal(a.files[1].sha256, rec.artifacts[1].files[1].sha256)
  end)

  it("drops exclude-paths and keeps dot files under **", function()
    local src, out = h.tmpdir(), h.tmpdir() .. "/out"
    h.sh("cd " .. src .. " && mkdir -p d/logs && touch d/a.txt d/.hidden d/logs/x.log d/b.tmp")
    build(src, "version: 0.2\n" .. PHASES .. "artifacts:\n  base-directory: d\n  files: ['**/*']\n"
      .. "  exclude-paths: ['logs/**/*', '*.tmp']\n", { output = out })
    assert.same({ ".hidden", "a.txt" }, tree(out .. "/primary"))
  end)

  it("writes secondary artifacts under their identifiers, and names built with the shell", function()
    local src, out = h.tmpdir(), h.tmpdir() .. "/out"
    example(src)
    local r = build(src, [[
version: 0.2
env:
  variables:
    V: "7"
phases:
  build:
    commands: ["export W=w"]
artifacts:
  files: [my-build-1/my-file-1.txt]
  name: app-$V-$W
  secondary-artifacts:
    second:
      files: ['**/*']
      base-directory: my-build-2
      discard-paths: yes
]], { output = out })
    assert.equal("SUCCEEDED", r.status)
    assert.same({ "my-build-1/my-file-1.txt" }, tree(out .. "/app-7-w"))
    assert.same({ "my-file-2.txt", "my-file-3.txt" }, tree(out .. "/second"))
    assert.equal("second", r.artifacts[2].identifier)
  end)

  it("keeps symlinks only with enable-symlinks", function()
    local src, out = h.tmpdir(), h.tmpdir()
    h.sh("cd " .. src .. " && echo t > target && ln -s target link")
    build(src, "version: 0.2\n" .. PHASES .. "artifacts:\n  files: [link]\n", { output = out .. "/a" })
    assert.equal("file", h.sh("stat -c %F " .. out .. "/a/primary/link"):match("regular") and "file")
    build(src, "version: 0.2\n" .. PHASES .. "artifacts:\n  files: [link]\n  enable-symlinks: yes\n",
      { output = out .. "/b" })
    assert.matches("symbolic link", h.sh("stat -c %F " .. out .. "/b/primary/link"))
  end)

  it("fails UPLOAD_ARTIFACTS without writing anything when nothing matches or names collide",
    function()
      local src, out = h.tmpdir(), h.tmpdir() .. "/out"
      example(src)
      h.sh("mkdir -p " .. src .. "/x " .. src .. "/y && touch " .. src .. "/x/f " .. src .. "/y/f")
      local r = build(src, "version: 0.2\n" .. PHASES .. "artifacts:\n  files: ['nothing/*']\n",
        { output = out })
      assert.equal("FAILED", r.status)
      assert.matches("no matching artifact paths", r.phases[#r.phases - 2].contexts[1].message)
      r = build(src, "version: 0.2\n" .. PHASES .. "artifacts:\n  files: [my-build-1/my-file-1.txt]\n"
        .. "  secondary-artifacts:\n    s:\n      files: ['x/f', 'y/f']\n      discard-paths: yes\n",
        { output = out })
      assert.equal("FAILED", r.status)
      -- Not even an empty output directory.
      assert.is_nil(io.open(out))
    end)

  it("uploads artifacts after a failed build (BUILD -> POST_BUILD -> UPLOAD_ARTIFACTS)", function()
    local src, out = h.tmpdir(), h.tmpdir() .. "/out"
    local r = build(src, "version: 0.2\nphases:\n  build:\n    commands: ['echo x > f', 'false']\n"
      .. "artifacts:\n  files: [f]\n", { output = out })
    assert.equal("FAILED", r.status)
    assert.same({ "f" }, tree(out .. "/primary"))
  end)
end)

describe("buildspec cache", function()
  it("saves cache.paths after a build and restores them before the next", function()
    local src = h.tmpdir()
    local text = [[
version: 0.2
phases:
  build:
    commands:
      - test -f deps/lib.txt && echo cached || echo cold
      - mkdir -p deps && echo lib > deps/lib.txt
cache:
  paths: ['deps/**/*']
]]
    local lines = {}
    local project = uniq("cached")
    build(src, text, { project = project, on_line = function(l) lines[#lines + 1] = l end })
    os.execute("rm -rf " .. src .. "/deps")
    build(src, text, { project = project, on_line = function(l) lines[#lines + 1] = l end })
    local joined = table.concat(lines, "\n")
    assert.truthy(joined:find("\ncold\n", 1, true))
    assert.truthy(joined:find("\ncached\n", 1, true))
  end)

  it("restores from a fallback key, and only restores with action: restore", function()
    local src = h.tmpdir()
    local project = uniq("keyed")
    build(src, "version: 0.2\nphases:\n  build:\n    commands: ['mkdir -p c && echo v1 > c/f']\n"
      .. "cache:\n  key: base\n  paths: ['c/**/*']\n", { project = project })
    os.execute("rm -rf " .. src .. "/c")
    local lines = {}
    build(src, "version: 0.2\nphases:\n  build:\n    commands: ['cat c/f', 'echo v2 > c/f']\n"
      .. "cache:\n  key: feature\n  fallback-keys: [base]\n  action: restore\n  paths: ['c/**/*']\n",
      { project = project, on_line = function(l) lines[#lines + 1] = l end })
    assert.truthy(table.concat(lines, "\n"):find("\nv1\n", 1, true))
    local home = bs.abspath(os.getenv("TIDE_HOME") or ".tide")
    assert.truthy(io.open(home .. "/builds/cache/" .. project .. "/base/src/c/f"))
    assert.is_nil(io.open(home .. "/builds/cache/" .. project .. "/feature/src/c/f"))
  end)
end)

describe("buildspec reports", function()
  local ok_reports = pcall(require, "tide.reports")

  it("17: a group named rg in project p is p-rg, JUnit by default", function()
    if not ok_reports then
      pending("tide.reports is not in this tide")
      return
    end
    local src = h.tmpdir()
    local r = build(src, [[
version: 0.2
phases:
  build:
    commands:
      - mkdir -p out/com/x
      - printf '<testsuite name="s" tests="2"><testcase name="a"/><testcase name="b"><failure message="m"/></testcase></testsuite>' > out/com/x/TEST-a.xml
reports:
  rg:
    files: ['**/*.xml']
    base-directory: out
  lower:
    files: ['com/x/*.xml']
    base-directory: out
    discard-paths: yes
    file-format: junitxml
]])
    assert.equal("p-rg", r.reports[1].group)
    assert.equal("JUNITXML", r.reports[1].format)
    assert.equal("com/x/TEST-a.xml", r.reports[1].files[1].path)
    assert.equal("TEST-a.xml", r.reports[2].files[1].path)
    assert.truthy(r.reports[1].report_id)
  end)
end)
