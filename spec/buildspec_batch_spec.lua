-- tide.buildspec: batch builds (build-list, build-graph, build-matrix), parallelism, fast-fail.
-- luacheck: ignore 631 (buildspecs written out in full)
local h = require("spec.helper")
local bs = require("tide.buildspec")

local function batch(files, opts)
  local src = h.tmpdir()
  for name, text in pairs(files) do
    h.write(src .. "/" .. name, text)
  end
  local o = { src = src, sandbox = false, project = "b", quiet = true }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  return bs.run(o), src
end

local function by_identifier(r)
  local t = {}
  for _, m in ipairs(r.builds) do
    t[m.identifier] = m
  end
  return t
end

describe("buildspec batches", function()
  it("18: a matrix of 2 buildspecs x 3 values runs exactly 6 builds with the right pairs", function()
    local member = "version: 0.2\nphases:\n  build:\n    commands:\n"
      .. "      - echo \"%s $MY_VAR $CODEBUILD_BATCH_BUILD_IDENTIFIER\" >> pairs.txt\n"
    local r, src = batch({
      ["buildspec.yml"] = [[
version: 0.2
batch:
  build-matrix:
    dynamic:
      buildspec: [a.yml, b.yml]
      env:
        variables:
          MY_VAR: [x, y, z]
]],
      ["a.yml"] = member:format("a"),
      ["b.yml"] = member:format("b"),
    }, { parallel = 2 })
    assert.equal("SUCCEEDED", r.status)
    assert.equal(6, #r.builds)
    local lines = {}
    for l in h.read(src .. "/pairs.txt"):gmatch("[^\n]+") do
      local a, v = l:match("^(%a) (%a) build%d$")
      lines[#lines + 1] = a .. v
    end
    table.sort(lines)
    assert.same({ "ax", "ay", "az", "bx", "by", "bz" }, lines)
  end)

  it("19: a graph starts a build only after what it depends on has finished", function()
    local r, src = batch({
      ["buildspec.yml"] = [[
version: 0.2
batch:
  build-graph:
    - identifier: build2
      depend-on: [build1]
    - identifier: build1
phases:
  build:
    commands:
      - echo "start $CODEBUILD_BATCH_BUILD_IDENTIFIER" >> order.txt
      - sleep 0.2
      - echo "end $CODEBUILD_BATCH_BUILD_IDENTIFIER" >> order.txt
]],
    }, { batch = true })
    assert.equal("SUCCEEDED", r.status)
    assert.equal("start build1\nend build1\nstart build2\nend build2\n", h.read(src .. "/order.txt"))
  end)

  it("does not run the dependants of a failed build, unless it may fail", function()
    local r = batch({
      ["buildspec.yml"] = [[
version: 0.2
batch:
  build-graph:
    - identifier: bad
      env:
        variables:
          FAIL: "1"
    - identifier: after_bad
      depend-on: [bad]
    - identifier: allowed
      ignore-failure: true
      env:
        variables:
          FAIL: "1"
    - identifier: after_allowed
      depend-on: [allowed]
phases:
  build:
    commands: ['test -z "$FAIL"']
]],
    }, { batch = true })
    local t = by_identifier(r)
    assert.equal("FAILED", r.status)
    assert.equal("FAILED", t.bad.status)
    assert.equal("NOT_RUN", t.after_bad.status)
    assert.equal("FAILED", t.allowed.status)
    assert.equal("SUCCEEDED", t.after_allowed.status)
  end)

  it("runs a build-list in parallel; fast-fail stops the others", function()
    local t0 = require("tide").monotime()
    local r = batch({
      ["buildspec.yml"] = [[
version: 0.2
batch:
  fast-fail: true
  build-list:
    - identifier: quick_fail
      env:
        variables:
          FAIL: "1"
    - identifier: slow
phases:
  build:
    commands: ['if [ -n "$FAIL" ]; then sleep 0.2; false; else sleep 30; fi']
]],
    }, { batch = true })
    assert.is_true(require("tide").monotime() - t0 < 10)
    local t = by_identifier(r)
    assert.equal("FAILED", r.status)
    assert.equal("FAILED", t.quick_fail.status)
    assert.equal("STOPPED", t.slow.status)
  end)

  it("runs a batch-only buildspec as a batch, and a member's missing buildspec fails it", function()
    local r = batch({
      ["buildspec.yml"] = "version: 0.2\nbatch:\n  build-list:\n    - identifier: one\n"
        .. "      buildspec: missing.yml\n",
    })
    assert.equal("FAILED", r.status)
    assert.matches("cannot read the buildspec", r.builds[1].error)
  end)
end)
