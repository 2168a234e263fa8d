-- The pipeline declaration: every rule of the structure, checked before anything runs, with an
-- error naming the file and the place; trigger filters and cron schedules.
local helper = require("helper")
local declare = require("tide.pipeline.declare")
local triggers = require("tide.pipeline.triggers")

local function run() end

local function err_of(decl)
  local e = helper.raises("EINPUT", declare.validate, decl, "p.lua")
  return e.message
end

local function two(actions1, actions2, extra)
  local d = { name = "p", stages = { { name = "One", actions = actions1 },
    { name = "Two", actions = actions2 or { { name = "X", run = run } } } } }
  for k, v in pairs(extra or {}) do
    d[k] = v
  end
  return d
end

describe("pipeline declaration", function()
  it("accepts a full pipeline and groups actions by runOrder", function()
    local plan = declare.validate(two({
      { name = "A", run = run, output = "a", namespace = "NA" },
      { name = "B", run = run, run_order = 3, input = "a", env = { V = "#{NA.X}" } },
      { name = "C", run = run, run_order = 1 },
    }, nil, { variables = { ENV = "dev" }, mode = "QUEUED" }), "p.lua")
    assert.are.equal("QUEUED", plan.mode)
    assert.are.equal(2, #plan.stages[1].groups)
    assert.are.equal(2, #plan.stages[1].groups[1])
    assert.are.equal("B", plan.stages[1].groups[2][1].name)
    assert.are.equal("dev", plan.variables.ENV.default)
  end)

  it("rejects an artifact cycle, naming it", function()
    local msg = err_of(two({
      { name = "A", run = run, input = "b", output = "a" },
      { name = "B", run = run, input = "a", output = "b" },
    }))
    assert.matches("^p.lua: stages%[1%] 'One' actions%[1%] 'A': cycle in artifacts: " ..
      "One/A %-> One/B %-> One/A", msg)
  end)

  it("rejects an artifact consumed before it is produced", function()
    local msg = err_of(two({ { name = "A", run = run, input = "late" } },
      { { name = "B", run = run, output = "late" } }))
    assert.matches("'A': artifact 'late' is consumed before it is produced %(by Two/B", msg)
    -- The same runOrder is not earlier either (conformance 35).
    msg = err_of(two({ { name = "A", run = run, output = "x" },
      { name = "B", run = run, input = "x" } }))
    assert.matches("'B': artifact 'x' is consumed before it is produced", msg)
    msg = err_of(two({ { name = "A", run = run, input = "nowhere" } }))
    assert.matches("input artifact 'nowhere' is not produced by any action", msg)
  end)

  it("rejects duplicate names", function()
    assert.matches("stages%[1%] 'One' actions%[2%] 'A': duplicate action name 'A' in stage 'One'",
      err_of(two({ { name = "A", run = run }, { name = "A", run = run } })))
    local d = two({ { name = "A", run = run } })
    d.stages[2].name = "One"
    assert.matches("duplicate stage name 'One'", err_of(d))
    assert.matches("output artifact 'o' is already produced by One/A",
      err_of(two({ { name = "A", run = run, output = "o" } },
        { { name = "B", run = run, output = "o" } })))
    assert.matches("namespace 'n' is already used",
      err_of(two({ { name = "A", run = run, namespace = "n" } },
        { { name = "B", run = run, namespace = "n" } })))
    assert.matches("namespace 'o' clashes with an artifact",
      err_of(two({ { name = "A", run = run, namespace = "o", output = "o" } })))
  end)

  it("rejects unknown variables and early references", function()
    assert.matches("'B': unknown variable #{nope.X}: no action has namespace 'nope'",
      err_of(two({ { name = "A", run = run } }, { { name = "B", run = run, env = {
        V = "#{nope.X}" } } })))
    assert.matches("unknown variable #{variables.MISSING}",
      err_of(two({ { name = "A", run = run, env = { V = "#{variables.MISSING}" } } })))
    assert.matches("unknown variable #{codepipeline.Nope}",
      err_of(two({ { name = "A", run = run, env = { V = "#{codepipeline.Nope}" } } })))
    -- Same runOrder as the producer (conformance 36).
    assert.matches("variable #{S.CommitId} is used before One/A, which produces it, has run",
      err_of(two({ { name = "A", run = run, namespace = "S" },
        { name = "B", run = run, env = { V = "#{S.CommitId}" } } })))
    -- A source action exports CodeCommit's variables only.
    assert.matches("unknown variable #{S.Sha}: a source action exports",
      err_of(two({ { name = "A", source = { git = "/r" }, output = "s", namespace = "S" } },
        { { name = "B", run = run, env = { V = "#{S.Sha}" } } })))
  end)

  it("rejects unknown keys, wrong types and bad values, naming the place", function()
    assert.matches("^p.lua: stages%[2%] 'Two' actions%[1%] 'X': unknown key 'biuld'$",
      err_of(two({ { name = "A", run = run } }, { { name = "X", biuld = "b.yml" } })))
    assert.matches("'A': 'run' must be a function, not a string",
      err_of(two({ { name = "A", run = "echo" } })))
    assert.matches("run_order must be a positive integer, not 0",
      err_of(two({ { name = "A", run = run, run_order = 0 } })))
    assert.matches("run_order must be a positive integer, not 1.5",
      err_of(two({ { name = "A", run = run, run_order = 1.5 } })))
    assert.matches("needs one of source, build, approval, run",
      err_of(two({ { name = "A" } })))
    assert.matches("two kinds given", err_of(two({ { name = "A", run = run, approval = {} } })))
    assert.matches("^p.lua: unknown key 'stagez'$", err_of({ name = "p", stagez = {} }))
    assert.matches("mode must be SUPERSEDED, QUEUED or PARALLEL",
      err_of(two({ { name = "A", run = run } }, nil, { mode = "FAST" })))
    assert.matches("action name 'a b' must be at most 100 characters",
      err_of(two({ { name = "a b", run = run } })))
    assert.matches("source actions belong to the first stage only",
      err_of(two({ { name = "A", run = run } },
        { { name = "S", source = { git = "/r" }, output = "s" } })))
    assert.matches("timeout 'soon' is not a duration",
      err_of(two({ { name = "A", run = run, timeout = "soon" } })))
    assert.matches("on_failure: result must be one of FAIL, RETRY, ROLLBACK, SKIP, not 'MAYBE'",
      err_of({ name = "p", stages = { { name = "S", on_failure = { result = "MAYBE" },
        actions = { { name = "A", run = run } } } } }))
    assert.matches("a pipeline script must return a table", err_of(42))
  end)

  it("expands user-defined kinds into the base kinds", function()
    local plan = declare.validate({ name = "p", kinds = {
      shell = function(cmd) return { run = function() return cmd end } end,
    }, stages = { { name = "S", actions = { { name = "A", shell = "make" } } } } }, "p.lua")
    local a = plan.stages[1].actions[1]
    assert.are.equal("run", a.kind)
    assert.are.equal("shell", a.user_kind)
    assert.are.equal("make", a.fn())
  end)

  it("checks triggers", function()
    local src = { { name = "Src", source = { git = "/r.git" }, output = "s" } }
    local plan = declare.validate(two(src, nil, { triggers = {
      { git = "/r.git", branches = { includes = { "release/**" }, excludes = { "release/old*" } },
        paths = { "src/**" } },
      { schedule = "*/15 9-17 * * mon-fri" } } }), "p.lua")
    assert.are.equal("Src", plan.triggers[1].source)
    assert.are.equal("schedule", plan.triggers[2].kind)
    assert.matches("triggers%[1%]: cron '61 %* %* %* %*': bad minute '61'",
      err_of(two(src, nil, { triggers = { { schedule = "61 * * * *" } } })))
    assert.matches("triggers%[1%]: no source action named 'Nope'",
      err_of(two(src, nil, { triggers = { { source = "Nope" } } })))
    assert.matches("at most 8 includes patterns",
      err_of(two(src, nil, { triggers = { { git = "/r.git",
        branches = { "1", "2", "3", "4", "5", "6", "7", "8", "9" } } } })))
    -- A push trigger's revision must go to a source action: one reading its repository.
    assert.matches("triggers%[1%]: no source action of the first stage reads '/other.git'",
      err_of(two(src, nil, { triggers = { { git = "/other.git" } } })))
  end)

  it("refuses rollback in a PARALLEL pipeline, long values and non-string env", function()
    assert.matches("p.lua: stages%[2%] 'Two'.on_failure: a PARALLEL pipeline cannot roll back",
      err_of({ name = "p", mode = "PARALLEL", stages = { { name = "One", actions = {
        { name = "A", run = run } } }, { name = "Two", on_failure = { result = "ROLLBACK" },
        actions = { { name = "X", run = run } } } } }))
    local ok = pcall(declare.validate, { name = "p", mode = "QUEUED", stages = {
      { name = "One", on_success = { result = "ROLLBACK", rules = {} },
        actions = { { name = "A", run = run } } } } }, "p.lua")
    assert.is_true(ok)
    assert.matches("actions%[1%] 'A'.approval.summary: a value is at most 1000 characters, "
      .. "not 1001", err_of(two({ { name = "A",
        approval = { summary = string.rep("x", 1001) } } })))
    assert.matches("actions%[1%] 'A'.env: 'N' must be a string, not a number",
      err_of(two({ { name = "A", env = { N = 3 }, run = run } })))
    assert.matches("actions%[1%] 'A'.env.L: a value is at most 1000 characters",
      err_of(two({ { name = "A", env = { L = string.rep("y", 1001) }, run = run } })))
  end)
end)

describe("trigger filters", function()
  it("lets excludes win over includes (conformance 41)", function()
    local t = { branches = { includes = { "release/**" }, excludes = { "release/old*" } } }
    local none = function() return {} end
    assert.is_false(triggers.push_matches(t, "refs/heads/release/old-1", none))
    assert.is_true(triggers.push_matches(t, "refs/heads/release/v2/x", none))
    assert.is_false(triggers.push_matches(t, "refs/heads/main", none))
    assert.is_false(triggers.push_matches(t, "refs/tags/v1", none))
  end)

  it("matches tags, file paths, braces and sets", function()
    local t = { tags = { includes = { "v{1,2}.*" }, excludes = {} } }
    assert.is_true(triggers.push_matches(t, "refs/tags/v2.0", nil))
    assert.is_false(triggers.push_matches(t, "refs/tags/v3.0", nil))
    assert.is_false(triggers.push_matches(t, "refs/heads/main", nil))
    local p = { paths = { includes = { "src/**/*.lua" }, excludes = { "src/vendor/**" } } }
    assert.is_true(triggers.push_matches(p, "refs/heads/x", function()
      return { "README", "src/a/b.lua" } end))
    assert.is_false(triggers.push_matches(p, "refs/heads/x", function()
      return { "README", "src/vendor/b.lua" } end))
    assert.is_true(triggers.glob_match("[!a]bc", "xbc"))
    assert.is_false(triggers.glob_match("[!a]bc", "abc"))
    assert.is_true(triggers.glob_match("feat/*", "feat/x"))
    assert.is_false(triggers.glob_match("feat/*", "feat/x/y"))
  end)
end)

describe("cron schedules", function()
  local function at(y, mo, d, h, mi)
    return os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = 0 })
  end

  it("finds the next matching minute", function()
    local s = assert(triggers.cron("*/15 9-17 * * mon-fri"))
    -- Friday 2026-11-27 17:50 -> Monday 09:00.
    assert.are.equal(at(2026, 11, 30, 9, 0), triggers.next_time(s, at(2026, 11, 27, 17, 50)))
    assert.are.equal(at(2026, 11, 27, 10, 15), triggers.next_time(s, at(2026, 11, 27, 10, 0)))
    local daily = assert(triggers.cron("@daily"))
    assert.are.equal(at(2026, 12, 1, 0, 0), triggers.next_time(daily, at(2026, 11, 30, 0, 0)))
    -- Day of month or day of week when both are given (Vixie cron).
    local either = assert(triggers.cron("0 0 1 * sun"))
    assert.are.equal(at(2026, 11, 29, 0, 0), triggers.next_time(either, at(2026, 11, 27, 12, 0)))
    local feb30 = assert(triggers.cron("0 0 30 feb *"))
    assert.is_nil(triggers.next_time(feb30, at(2026, 1, 1, 0, 0)))
  end)

  it("never raises on hostile input", function()
    math.randomseed(7)
    local alphabet = "0123456789*/,- @abcdefghijklmnopqrstuvwxyz\0\255{}[]!?"
    for _ = 1, 3000 do
      local n = math.random(0, 24)
      local chars = {}
      for i = 1, n do
        local k = math.random(#alphabet)
        chars[i] = alphabet:sub(k, k)
      end
      local expr = table.concat(chars)
      local ok, s = pcall(triggers.cron, expr)
      assert.is_true(ok, expr)
      if s then
        assert.is_true(pcall(triggers.next_time, s, 0), expr)
      end
      assert.is_true(pcall(triggers.glob_match, expr, "a/b"), expr)
    end
    assert.is_nil(triggers.cron(42))
  end)

  it("rejects bad expressions with the reason", function()
    local bad = { ["* * *"] = "needs 5 fields", ["* 24 * * *"] = "bad hour '24'",
      ["5-1 * * * *"] = "bad minute '5%-1'", ["* * * foo *"] = "bad month 'foo'",
      ["*/0 * * * *"] = "bad minute" }
    for expr, want in pairs(bad) do
      local s, msg = triggers.cron(expr)
      assert.is_nil(s)
      assert.matches(want, msg)
    end
  end)
end)

describe("build file selection and the tide home", function()
  -- A pipeline build's source can be a copy kept under the tide home; the home is left out of
  -- a selection only when it lies inside the source (SRC/.tide).
  local fs = require("tide.fs")
  local files = require("tide.buildspec.files")

  local function put(path)
    assert(fs.mkdir_p((path:gsub("/[^/]*$", ""))))
    helper.write(path, "x")
  end

  local function rels(sel)
    local out = {}
    for _, item in ipairs(sel) do
      out[#out + 1] = item.rel
    end
    table.sort(out)
    return table.concat(out, " ")
  end

  it("selects a source that lies under the home", function()
    local home = helper.tmpdir() .. "/home"
    local src = home .. "/pipelines/work/1/Build/Unit/1/src"
    put(src .. "/reports/unit.xml")
    put(src .. "/dist/app.lua")
    assert.are.equal("dist/app.lua reports/unit.xml",
      rels(files.select(src, { files = { "**/*" } }, home)))
  end)

  it("leaves out a home that lies inside the source", function()
    local src = helper.tmpdir() .. "/proj"
    put(src .. "/app.lua")
    put(src .. "/.tide/state.db")
    assert.are.equal("app.lua", rels(files.select(src, { files = { "**/*" } }, src .. "/.tide")))
  end)
end)
