-- Pipelines run by real tide processes: variables and outputs, approvals from another process,
-- stop, retry, stage conditions, the three execution modes, transitions, sources from git and
-- the errors that come before anything runs.
local helper = require("helper")
local proc = require("tide.proc")
local tide = require("tide")
local json = require("tide.json")

local TIDE = helper.tide

local function sql(home, query)
  return (proc.run({ "sqlite3", home .. "/state.db", query }).stdout:gsub("\n$", ""))
end

--- Runs tide in home; returns the result (code, stdout, stderr).
local function argv(home, ...)
  local a = { TIDE, "--home", home, "--plain", ... }
  a.env = { TIDE_VIEW = "none" }
  return a
end

local function t(home, ...)
  return proc.run(argv(home, ...))
end

local function spawn(home, ...)
  return proc.spawn(argv(home, ...))
end

--- Polls fn() until it returns a truthy value (10 s at most).
local function eventually(fn, what)
  for _ = 1, 200 do
    local v = fn()
    if v then
      return v
    end
    tide.sleep(0.05)
  end
  error("timed out waiting for " .. what)
end

local function setup(text)
  local dir = helper.tmpdir()
  helper.write(dir .. "/p.lua", text)
  return dir, dir .. "/home", dir .. "/p.lua"
end

local function show(home, id)
  local r = proc.run({ TIDE, "--home", home, "--json", "show", tostring(id) })
  assert(r.code == 0, r.stderr)
  return json.decode(r.stdout).pipeline
end

--- The status of the span named name in the run's span tree (ok, error, cancelled).
local function span_status(home, id, name)
  local r = proc.run({ TIDE, "--home", home, "--json", "show", tostring(id) })
  for _, sp in ipairs(json.decode(r.stdout).spans) do
    if sp.name == name then
      return sp.status
    end
  end
end

local function action(x, stage, name)
  for _, s in ipairs(x.stages) do
    for _, a in ipairs(s.actions) do
      if s.name == stage and a.name == name then
        return a
      end
    end
  end
end

describe("tide run PIPELINE", function()
  it("passes variables, outputs and artifacts to later actions", function()
    local dir, home, file = setup([[
return {
  name = "vars",
  variables = { ENV = "staging" },
  stages = {
    { name = "Make", actions = {
      { name = "Gen", output = "out", namespace = "gen", run = function(ctx)
          local f = assert(io.open(ctx.outputs.out .. "/v.txt", "w"))
          f:write("payload")
          f:close()
          return { VERSION = "1." .. ctx.execution }
        end } } },
    { name = "Use", actions = {
      { name = "Read", input = "out", env = { TAG = "#{gen.VERSION}-#{variables.ENV}",
          ID = "#{codepipeline.PipelineExecutionId}" }, run = function(ctx)
          local f = assert(io.open(ctx.inputs.out .. "/v.txt"))
          print("got " .. f:read("a") .. " " .. ctx.env.TAG .. " " .. ctx.env.ID)
          f:close()
        end } } },
  },
}
]])
    local r = t(home, "run", file, "--var", "ENV=prod")
    assert.are.equal(0, r.code, r.stderr)
    local id = tonumber(sql(home, "SELECT id FROM pipeline_executions"))
    assert.matches("got payload 1%." .. id .. "%-prod " .. id, r.stdout)
    local x = show(home, id)
    assert.are.equal("Succeeded", x.status)
    assert.are.equal("1." .. id, action(x, "Make", "Gen").outputs.VERSION)
    assert.is_truthy(next(action(x, "Make", "Gen").artifacts.out))
    local text = t(home, "show", tostring(id)).stdout
    assert.matches("pipeline vars  execution " .. id .. "  Succeeded", text)
    assert.matches("Succeeded +Read", text)
    -- Bad --var: one line, exit 2, no execution.
    r = t(home, "run", file, "--var", "NOPE=1")
    assert.are.equal(2, r.code)
    assert.matches("unknown variable 'NOPE'", r.stderr)
    assert.are.equal("1", sql(home, "SELECT count(*) FROM pipeline_executions"))
    -- --dry-run draws and resolves, and runs nothing.
    r = t(home, "run", file, "--dry-run")
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("2%. Use", r.stdout)
    assert.matches("variable ENV = staging", r.stdout)
    assert.are.equal("1", sql(home, "SELECT count(*) FROM pipeline_executions"))
    local runs = json.decode(proc.run({ TIDE, "--home", home, "--json", "runs", "--pipeline",
      "vars" }).stdout)
    assert.are.equal(1, #runs)
    assert.are.equal(0, #json.decode(proc.run({ TIDE, "--home", home, "--json", "runs",
      "--pipeline", "other" }).stdout))
    assert.is_truthy(dir)
  end)

  it("waits for an approval answered from another process", function()
    local _, home, file = setup([[
return { name = "appr", stages = {
  { name = "Build", actions = { { name = "B", run = function() end } } },
  { name = "Release", actions = { { name = "Approve", approval = { timeout = "1h" } } } },
  { name = "Deploy", actions = { { name = "D", run = function() print("deployed") end } } },
} }
]])
    local p = spawn(home, "run", file)
    local id = eventually(function()
      local v = sql(home, "SELECT execution FROM pipeline_approvals WHERE status = 'Pending'")
      return v ~= "" and v
    end, "the approval")
    -- Not the waiting action, not an action, lowercase status: refused.
    local r = t(home, "approve", id, "Build/B", "--summary", "x")
    assert.are.equal(2, r.code)
    assert.are.equal(1, select(2, r.stderr:gsub("\n", "")))
    assert.matches("execution " .. id .. " is not waiting for approval at Build/B", r.stderr)
    r = t(home, "approve", id, "Release/Nope", "--summary", "x")
    assert.are.equal(2, r.code)
    assert.matches("has no action Release/Nope", r.stderr)
    assert.has_error(function()
      require("tide.pipeline").approve(id, "Release/Approve", "approved", "x")
    end)
    r = t(home, "approve", id, "Release/Approve", "--summary", "ship it")
    assert.are.equal(0, r.code, r.stderr)
    local res = p:wait()
    assert.are.equal(0, res.code, res.stderr)
    assert.matches("deployed", res.stdout)
    assert.are.equal("Approved|ship it", sql(home, "SELECT status, summary FROM "
      .. "pipeline_approvals"))
    -- Approving again: not waiting any more.
    r = t(home, "approve", id, "Release/Approve", "--summary", "again")
    assert.are.equal(2, r.code)

    -- A rejection fails the action with its summary.
    p = spawn(home, "run", file)
    local id2 = eventually(function()
      local v = sql(home, "SELECT execution FROM pipeline_approvals WHERE status = 'Pending'")
      return v ~= "" and v
    end, "the second approval")
    assert.are.equal(0, t(home, "approve", id2, "Release/Approve", "--reject", "--summary",
      "not today").code)
    res = p:wait()
    assert.are.equal(1, res.code)
    local x = show(home, id2)
    assert.are.equal("Failed", x.status)
    assert.matches("rejected: not today", action(x, "Release", "Approve").message)
    assert.are.equal("Pending", action(x, "Deploy", "D").status)
  end)

  it("fails an approval nobody answers in time", function()
    local _, home, file = setup([[
return { name = "late", stages = {
  { name = "Release", actions = { { name = "Approve", approval = { timeout = "1s" } } } },
} }
]])
    local r = t(home, "run", file)
    assert.are.equal(1, r.code)
    assert.are.equal("Expired", sql(home, "SELECT status FROM pipeline_approvals"))
    assert.matches("timed out", sql(home, "SELECT message FROM pipeline_actions"))
  end)

  it("fails an action that runs past its timeout", function()
    local _, home, file = setup([[
return { name = "slow", stages = {
  { name = "S", actions = { { name = "Sleepy", timeout = 0.3, run = function()
      require("tide.proc").run({ "sleep", "5" })
    end } } },
} }
]])
    local t0 = tide.monotime()
    local r = t(home, "run", file)
    assert.are.equal(1, r.code)
    assert.is_true(tide.monotime() - t0 < 4)
    assert.are.equal("Failed|timed out after 0.3s", sql(home, "SELECT status, message FROM "
      .. "pipeline_actions"))
  end)

  it("stops: lets running actions finish, or abandons them", function()
    local dir, home, file = setup([[
local tide = require("tide")
return { name = "stopme", stages = {
  { name = "Slow", actions = {
    { name = "Wait", run = function()
        local go = os.getenv("GO")
        while not io.open(go) do tide.sleep(0.02) end
        print("slow finished")
      end } } },
  { name = "Next", actions = { { name = "N", run = function() print("next ran") end } } },
} }
]])
    local go = dir .. "/go"
    local p = proc.spawn({ TIDE, "--home", home, "--plain", "run", file,
      env = { GO = go, TIDE_VIEW = "none" } })
    local id = eventually(function()
      local v = sql(home, "SELECT execution FROM pipeline_actions WHERE status = 'InProgress'")
      return v ~= "" and v
    end, "the slow action")
    local r = t(home, "stop", id)
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("stopping", r.stdout)
    tide.sleep(0.5)
    assert.are.equal("InProgress", sql(home, "SELECT status FROM pipeline_actions WHERE "
      .. "action = 'Wait'"))
    helper.write(go, "")
    local res = p:wait()
    assert.are.equal(1, res.code)
    assert.matches("slow finished", res.stdout)
    assert.not_matches("next ran", res.stdout)
    local x = show(home, id)
    assert.are.equal("Stopped", x.status)
    assert.are.equal("Succeeded", action(x, "Slow", "Wait").status)
    -- Every action of Slow succeeded: the stage succeeded, though the execution stopped after.
    assert.are.equal("Succeeded", x.stages[1].status)
    assert.are.equal("Pending", action(x, "Next", "N").status)
    assert.are.equal(1, t(home, "stop", id).code) -- not running any more
    -- A retry goes on with Next and does not run the succeeded Slow again.
    r = proc.run({ TIDE, "--home", home, "--plain", "retry", id,
      env = { GO = go, TIDE_VIEW = "none" } })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("next ran", r.stdout)
    assert.not_matches("slow finished", r.stdout)

    os.remove(go)
    p = proc.spawn({ TIDE, "--home", home, "--plain", "run", file, "--new",
      env = { GO = go, TIDE_VIEW = "none" } })
    local id2 = eventually(function()
      local v = sql(home, "SELECT execution FROM pipeline_actions WHERE status = 'InProgress'")
      return v ~= "" and v
    end, "the second slow action")
    assert.are.equal(0, t(home, "stop", id2, "--abandon").code)
    res = p:wait()
    assert.are.equal(1, res.code)
    x = show(home, id2)
    assert.are.equal("Stopped", x.status)
    assert.are.equal("Abandoned", action(x, "Slow", "Wait").status)
    -- The stopped stage's span says so.
    assert.are.equal("cancelled", span_status(home, id2, "Slow"))
  end)

  it("retries only the failed actions of a stage, reusing earlier outputs", function()
    local dir, home, file = setup([[
local function mark(ctx)
  local f = assert(io.open(os.getenv("MARKS"), "a"))
  f:write(ctx.stage .. "/" .. ctx.action .. "\n")
  f:close()
end
return { name = "retry", stages = {
  { name = "First", actions = { { name = "F", namespace = "f", run = function(ctx)
      mark(ctx) return { V = "v" .. ctx.execution } end } } },
  { name = "Test", actions = {
    { name = "Good", run = mark },
    { name = "Flaky", env = { V = "#{f.V}" }, run = function(ctx)
        mark(ctx)
        if not io.open(os.getenv("FIXED")) then error("flaky failed") end
        print("flaky sees " .. ctx.env.V)
      end } } },
  { name = "After", actions = { { name = "A", run = mark } } },
} }
]])
    local env = { MARKS = dir .. "/marks", FIXED = dir .. "/fixed", TIDE_VIEW = "none" }
    local r = proc.run({ TIDE, "--home", home, "--plain", "run", file, env = env })
    assert.are.equal(1, r.code)
    local id = sql(home, "SELECT id FROM pipeline_executions")
    assert.matches("flaky failed", sql(home, "SELECT message FROM pipeline_actions WHERE "
      .. "action = 'Flaky'"))
    helper.write(dir .. "/fixed", "")
    -- The failed stage's span failed too, as the store says.
    assert.are.equal("error", span_status(home, id, "Test"))
    assert.are.equal("ok", span_status(home, id, "First"))
    -- A plain retry runs only what did not succeed (FAILED_ACTIONS).
    r = proc.run({ TIDE, "--home", home, "--plain", "retry", id, env = env })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("flaky sees v" .. id, r.stdout)
    assert.are.equal("First/F\nTest/Good\nTest/Flaky\nTest/Flaky\nAfter/A\n",
      helper.read(dir .. "/marks"))
    local x = show(home, id)
    assert.are.equal("Succeeded", x.status)
    assert.are.equal(2, action(x, "Test", "Flaky").attempt)
    assert.are.equal(1, action(x, "Test", "Good").attempt)
    -- A succeeded execution cannot be retried.
    r = proc.run({ TIDE, "--home", home, "--plain", "retry", id, env = env })
    assert.are.equal(1, r.code)
    assert.matches("is Succeeded: only a failed, stopped or interrupted", r.stderr)
  end)

  it("applies stage conditions and the automatic retry", function()
    local dir, home, file = setup([[
local function count(ctx)
  local path = os.getenv("DIR") .. "/" .. ctx.action
  local f = io.open(path)
  local n = f and tonumber(f:read("a")) or 0
  if f then f:close() end
  f = assert(io.open(path, "w"))
  f:write(tostring(n + 1))
  f:close()
  return n + 1
end
return { name = "cond", variables = { GATE = "closed" }, stages = {
  { name = "Flaky", on_failure = { result = "RETRY", retry_mode = "FAILED_ACTIONS" },
    actions = {
      { name = "Once", namespace = "o", run = function(ctx)
          if count(ctx) == 1 then error("first attempt fails") end
          return { STATE = "ok" }
        end },
      { name = "Steady", run = function(ctx) count(ctx) end } } },
  { name = "Gated", before_entry = { result = "SKIP", rules = {
      { variable = "#{variables.GATE}", operator = "EQ", value = "open" } } },
    actions = { { name = "G", run = function(ctx) count(ctx) end } } },
  { name = "Checked", on_success = { result = "FAIL", rules = {
      function(ctx) return ctx.var("#{o.STATE}") == "ok" end,
      { variable = "#{c.RESULT}", operator = "MATCHES", value = "^good" } } },
    actions = { { name = "C", namespace = "c", run = function(ctx)
      count(ctx) return { RESULT = os.getenv("RESULT") } end } } },
} }
]])
    local r = proc.run({ TIDE, "--home", home, "--plain", "run", file,
      env = { DIR = dir, RESULT = "good one", TIDE_VIEW = "none" } })
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.are.equal("2", helper.read(dir .. "/Once"))
    assert.are.equal("1", helper.read(dir .. "/Steady")) -- FAILED_ACTIONS keeps the good one
    assert.is_nil(helper.read(dir .. "/G"))
    local id = sql(home, "SELECT max(id) FROM pipeline_executions")
    local x = show(home, id)
    assert.are.equal("Skipped", x.stages[2].status)
    assert.are.equal(2, x.stages[1].attempt)
    r = proc.run({ TIDE, "--home", home, "--plain", "run", file, "--var", "GATE=open",
      env = { DIR = dir, RESULT = "bad", TIDE_VIEW = "none" } })
    assert.are.equal(1, r.code)
    assert.are.equal("1", helper.read(dir .. "/G"))
    x = show(home, sql(home, "SELECT max(id) FROM pipeline_executions"))
    assert.are.equal("Failed", x.stages[3].status)
    assert.matches("success condition not met: #{c.RESULT} is 'bad'", x.stages[3].message)
  end)
end)

describe("execution modes", function()
  -- Stage One is quick; stage Two waits for a file per execution, so executions pile up in
  -- front of it.
  local TEXT = [[
local tide = require("tide")
-- A slow poller (POLL) misses the moment a stage comes free: the race of an arrival.
require("tide.pipeline.engine").POLL = tonumber(os.getenv("POLL")) or 0.25
return { name = "modes", mode = os.getenv("MODE"), stages = {
  { name = "One", actions = { { name = "Quick", run = function() end } } },
  { name = "Two", actions = { { name = "Gate", run = function(ctx)
      local f = assert(io.open(os.getenv("DIR") .. "/entered", "a"))
      f:write(ctx.execution, "\n")
      f:close()
      while not io.open(os.getenv("DIR") .. "/go" .. ctx.execution) do tide.sleep(0.02) end
    end } } },
} }
]]

  local function start(dir, home, file, mode, poll)
    return proc.spawn({ TIDE, "--home", home, "--plain", "run", file, "--new",
      env = { DIR = dir, MODE = mode, TIDE_VIEW = "none", POLL = poll } })
  end

  local function scenario(mode)
    local dir, home, file = setup(TEXT)
    local p1 = start(dir, home, file, mode)
    eventually(function() return helper.read(dir .. "/entered") end, "E1 in Two")
    local e1 = tonumber(helper.read(dir .. "/entered"))
    local p2 = start(dir, home, file, mode)
    local function stage_count(status)
      return tonumber(sql(home, "SELECT count(*) FROM pipeline_stages WHERE stage = 'One' AND "
        .. "status = '" .. status .. "'"))
    end
    eventually(function() return stage_count("Succeeded") == 2 end, "E2 past One")
    local p3 = start(dir, home, file, mode)
    eventually(function() return stage_count("Succeeded") == 3 end, "E3 past One")
    tide.sleep(0.4)
    local ids = {}
    for id in sql(home, "SELECT id FROM pipeline_executions ORDER BY id"):gmatch("%d+") do
      ids[#ids + 1] = tonumber(id)
    end
    for _, id in ipairs(ids) do
      helper.write(dir .. "/go" .. id, "")
    end
    local codes = { p1:wait().code, p2:wait().code, p3:wait().code }
    local statuses = sql(home, "SELECT group_concat(status, ',') FROM (SELECT status FROM "
      .. "pipeline_executions ORDER BY id)")
    return statuses, helper.read(dir .. "/entered"), ids, codes, e1
  end

  it("SUPERSEDED: a newer waiting execution replaces the older one (conformance 37)",
    function()
      local statuses, entered, ids = scenario("SUPERSEDED")
      assert.are.equal("Succeeded,Superseded,Succeeded", statuses)
      assert.are.equal(ids[1] .. "\n" .. ids[3] .. "\n", entered)
    end)

  it("SUPERSEDED: an older waiting execution never enters after a newer one", function()
    local dir, home, file = setup(TEXT)
    local p1 = start(dir, home, file, "SUPERSEDED")
    eventually(function() return helper.read(dir .. "/entered") end, "E1 in Two")
    local e1 = tonumber(helper.read(dir .. "/entered"))
    -- E2 waits at Two, looking at the store every 4 s only.
    local p2 = start(dir, home, file, "SUPERSEDED", "4")
    eventually(function()
      return sql(home, "SELECT count(*) FROM pipeline_executions WHERE waiting = 1") == "1"
    end, "E2 waiting at Two")
    local e2 = tonumber(sql(home, "SELECT id FROM pipeline_executions WHERE waiting = 1"))
    helper.write(dir .. "/go" .. e1, "")
    assert.are.equal(0, p1:wait().code)
    -- E3 arrives just after E1 left Two, and finds it free before E2 looks again.
    local p3 = start(dir, home, file, "SUPERSEDED")
    eventually(function()
      return select(2, (helper.read(dir .. "/entered") or ""):gsub("\n", "")) == 2
    end, "E3 in Two")
    local e3 = tonumber(sql(home, "SELECT max(id) FROM pipeline_executions"))
    assert.are.equal("Superseded", sql(home, "SELECT status FROM pipeline_executions WHERE id = "
      .. e2))
    helper.write(dir .. "/go" .. e2, "")
    helper.write(dir .. "/go" .. e3, "")
    assert.are.equal(0, p3:wait().code)
    assert.are.equal(0, p2:wait().code)
    assert.are.equal(e1 .. "\n" .. e3 .. "\n", helper.read(dir .. "/entered"))
    assert.are.equal("Succeeded,Superseded,Succeeded", sql(home, "SELECT group_concat(status, "
      .. "',') FROM (SELECT status FROM pipeline_executions ORDER BY id)"))
  end)

  it("QUEUED: they run one by one in arrival order (conformance 38)", function()
    local statuses, entered, ids = scenario("QUEUED")
    assert.are.equal("Succeeded,Succeeded,Succeeded", statuses)
    assert.are.equal(table.concat(ids, "\n") .. "\n", entered)
  end)

  it("PARALLEL: they run independently", function()
    local statuses, entered = scenario("PARALLEL")
    assert.are.equal("Succeeded,Succeeded,Succeeded", statuses)
    local n = select(2, entered:gsub("\n", ""))
    assert.are.equal(3, n)
  end)

  it("a disabled transition holds executions until it is enabled", function()
    local _, home, file = setup([[
return { name = "gate", stages = {
  { name = "A", actions = { { name = "X", run = function() end } } },
  { name = "B", actions = { { name = "Y", run = function() print("entered B") end } } },
} }
]])
    local bad = t(home, "transition", "gate", "B", "--enable", "--disable")
    assert.are.equal(2, bad.code)
    assert.matches("one of %-%-disable and %-%-enable", bad.stderr)
    -- A pipeline nothing ran under, or a stage it does not have: refused (exit 2).
    local unknown = t(home, "transition", "gate", "B", "--disable")
    assert.are.equal(2, unknown.code)
    assert.matches("no pipeline 'gate' has run", unknown.stderr)
    unknown = t(home, "transition", file, "Nope", "--disable")
    assert.are.equal(2, unknown.code)
    assert.matches("pipeline 'gate' has no stage 'Nope' %(its stages: A, B%)", unknown.stderr)
    assert.are.equal(0, t(home, "transition", file, "B", "--disable", "--reason", "frozen").code)
    assert.are.equal("frozen", sql(home, "SELECT reason FROM pipeline_transitions"))
    local p = spawn(home, "run", file)
    eventually(function()
      return sql(home, "SELECT waiting FROM pipeline_executions") == "1"
    end, "the execution to wait")
    assert.are.equal(0, t(home, "transition", "gate", "B", "--enable").code)
    local r = p:wait()
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("waiting to enter B", r.stdout)
    assert.matches("entered B", r.stdout)
  end)
end)

describe("git sources", function()
  local function repo(dir)
    local path = dir .. "/app"
    assert(proc.sh(table.concat({ "git init -q -b main " .. path, "cd " .. path,
      "echo one > f.txt", "git add .", "git -c user.name=T -c user.email=t@x commit -qm one" },
      " && ")).code == 0)
    return path
  end

  it("checks out the revision and exports CodeCommit's variables", function()
    local dir = helper.tmpdir()
    local path = repo(dir)
    local _, home, file = setup(string.format([[
return { name = "git", stages = {
  { name = "Source", actions = { { name = "Checkout", source = { git = %q, branch = "main" },
    output = "src", namespace = "S" } } },
  { name = "Use", actions = { { name = "Cat", input = "src", env = { C = "#{S.CommitId}",
    B = "#{S.BranchName}", R = "#{S.RepositoryName}" }, run = function(ctx)
      print(io.open(ctx.inputs.src .. "/f.txt"):read("l") .. " " .. ctx.env.C .. " "
        .. ctx.env.B .. " " .. ctx.env.R)
    end } } },
} }
]], path))
    local r = t(home, "run", file)
    assert.are.equal(0, r.code, r.stderr)
    local head = proc.run({ "git", "-C", path, "rev-parse", "HEAD" }).stdout:gsub("\n", "")
    assert.matches("one " .. head .. " main app", r.stdout)
    local x = show(home, sql(home, "SELECT id FROM pipeline_executions"))
    assert.are.equal(head, x.revisions.Checkout)
  end)

  it("refuses a repository that does not exist and a revision that does not resolve",
    function()
      local dir = helper.tmpdir()
      local path = repo(dir)
      local text = [[
return { name = "bad", stages = {
  { name = "Source", actions = { { name = "Checkout", source = { git = %q, %s = %q },
    output = "src" } } },
  { name = "Use", actions = { { name = "U", input = "src", run = function() end } } },
} }
]]
      local _, home, file = setup(text:format(dir .. "/missing", "branch", "main"))
      local r = t(home, "run", file)
      assert.are.equal(2, r.code)
      -- Every source error names the pipeline file first, like the declaration's.
      assert.matches("p%.lua: stages%[1%] 'Source' actions%[1%] 'Checkout': .*missing", r.stderr)
      assert.are.equal("", sql(home, "SELECT count(*) FROM pipeline_executions"):gsub("0", ""))
      helper.write(file, text:format(path, "branch", "nope"))
      r = t(home, "run", file)
      assert.are.equal(2, r.code)
      assert.matches("'Checkout': branch 'nope' does not resolve in", r.stderr)
      helper.write(file, text:format(path, "revision", "v9"))
      r = t(home, "run", file)
      assert.are.equal(2, r.code)
      assert.matches("p%.lua: .*'Checkout': revision 'v9' does not resolve in", r.stderr)
      -- A well-formed commit id that the repository does not have, named with the repository.
      local ghost = string.rep("ab", 20)
      helper.write(file, text:format(path, "revision", ghost))
      r = t(home, "run", file)
      assert.are.equal(2, r.code)
      assert.matches("p%.lua: stages%[1%] 'Source' actions%[1%] 'Checkout': revision '"
        .. ghost .. "' does not exist in '" .. (path:gsub("%p", "%%%0")) .. "'\n", r.stderr)
      -- A commit no ref points at still resolves.
      local first = proc.run({ "git", "-C", path, "rev-list", "--max-parents=0", "HEAD" })
        .stdout:match("%x+")
      helper.write(file, text:format(path, "revision", first))
      r = t(home, "run", file, "--dry-run")
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("source Checkout at " .. first, r.stdout)
      -- The same through a URL: looked up in a mirror under the home.
      helper.write(file, text:format("file://" .. path, "revision", ghost))
      r = t(home, "run", file)
      assert.are.equal(2, r.code)
      assert.matches("revision '" .. ghost .. "' does not exist in 'file://", r.stderr)
      assert.are.equal("0", sql(home, "SELECT count(*) FROM pipeline_executions"))
    end)

  it("tide watch starts an execution for a matching push, recording the revision", function()
    local dir = helper.tmpdir()
    local path = repo(dir)
    local _, home, file = setup(string.format([[
return { name = "watched",
  triggers = { { git = %q, branches = { includes = { "main", "release/**" },
    excludes = { "release/old*" } }, paths = { "src/**" } } },
  stages = {
    { name = "Source", actions = { { name = "Checkout", source = { git = %q, branch = "main" },
      output = "src", namespace = "S" } } },
    { name = "Use", actions = { { name = "U", input = "src", env = { C = "#{S.CommitId}" },
      run = function(ctx) print("built " .. ctx.env.C .. " of " .. ctx.var("#{S.BranchName}"))
      end } } },
  } }
]], path, path))
    local function commit(branch, name)
      assert(proc.sh(string.format("cd %s && git checkout -q -B %s && mkdir -p src && "
        .. "echo x > %s && git add . && git -c user.name=T -c user.email=t@x commit -qm %s",
        path, branch, name, name:gsub("/", "_"))).code == 0)
      return (proc.run({ "git", "-C", path, "rev-parse", "HEAD" }).stdout:gsub("\n", ""))
    end
    -- The first look is the baseline: nothing fires.
    assert.are.equal(0, t(home, "watch", file, "--once").code)
    assert.are.equal("0", sql(home, "SELECT count(*) FROM pipeline_triggers"))
    commit("main", "README") -- no file under src/
    commit("release/old-1", "src/a") -- excluded branch
    local rev = commit("release/v2/x", "src/b")
    local r = t(home, "watch", file, "--once")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("push|refs/heads/release/v2/x|" .. rev, sql(home,
      "SELECT kind, ref, revision FROM pipeline_triggers"))
    assert.matches("built " .. rev .. " of release/v2/x", r.stdout)
    -- The child's lines come through as they are, without the name of their stream.
    assert.matches("\nbuilt " .. rev .. " of release/v2/x\n", r.stdout)
    assert.not_matches("stdout", r.stdout)
    local exec = sql(home, "SELECT execution FROM pipeline_triggers")
    assert.are.equal("Succeeded", sql(home, "SELECT status FROM pipeline_executions WHERE id = "
      .. exec))
    -- Changed paths come from one mirror per repository, kept under the home and fetched again.
    local mirrors = proc.run({ "ls", home .. "/pipelines/mirrors" }).stdout
    assert.matches("^%x+\n$", mirrors)
    local rev2 = commit("main", "src/c")
    r = t(home, "watch", file, "--once")
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("built " .. rev2 .. " of main", r.stdout)
    assert.are.equal(mirrors, proc.run({ "ls", home .. "/pipelines/mirrors" }).stdout)
  end)
end)

describe("recovery", function()
  it("a resumed execution keeps its variables and its action's start and deadline", function()
    local dir, home, file = setup([[
local tide = require("tide")
return { name = "keep", variables = { V = "a" }, stages = {
  { name = "A", actions = { { name = "Slow", timeout = 2, run = function(ctx)
      local f = assert(io.open(os.getenv("DIR") .. "/marks", "a"))
      f:write(ctx.attempt, "\n")
      f:close()
      if ctx.attempt == 1 then tide.sleep(30) end
    end } } },
} }
]])
    local env = { DIR = dir, TIDE_VIEW = "none" }
    local p = proc.spawn({ TIDE, "--home", home, "--plain", "run", file, env = env })
    eventually(function() return helper.read(dir .. "/marks") end, "Slow to start")
    p:kill("KILL")
    p:wait()
    local started = sql(home, "SELECT started_us || ' ' || deadline_us FROM pipeline_actions")
    -- A changed --var cannot apply to the execution it would resume.
    local r = proc.run({ TIDE, "--home", home, "--plain", "run", file, "--var", "V=b", env = env })
    assert.are.equal(2, r.code)
    assert.matches("%-%-var V cannot change interrupted execution %d+, which runs with V=a",
      r.stderr)
    tide.sleep(2.2)
    -- Resumed past the deadline the action had: it fails at once instead of starting a new 2 s.
    r = proc.run({ TIDE, "--home", home, "--plain", "run", file, "--var", "V=a", env = env })
    assert.are.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("resuming interrupted execution", r.stdout)
    assert.matches("timed out after 2s", r.stdout)
    assert.are.equal(started, sql(home, "SELECT started_us || ' ' || deadline_us FROM "
      .. "pipeline_actions"))
  end)

  it("tide retry continues an execution whose tide was killed; tide stop ends one", function()
    local dir, home, file = setup([[
local tide = require("tide")
local function mark(ctx)
  local f = assert(io.open(os.getenv("DIR") .. "/marks", "a"))
  f:write(ctx.stage, "/", ctx.action, " ", ctx.attempt, "\n")
  f:close()
end
return { name = "resume", stages = {
  { name = "A", actions = { { name = "X", run = mark } } },
  { name = "B", actions = { { name = "Y", run = function(ctx)
      mark(ctx)
      if ctx.attempt == 1 then tide.sleep(30) end
    end } } },
  { name = "C", actions = { { name = "Z", run = mark } } },
} }
]])
    local env = { DIR = dir, TIDE_VIEW = "none" }
    local function start(...)
      local a = { TIDE, "--home", home, "--plain", ... }
      a.env = env
      return a
    end
    local p = proc.spawn(start("run", file))
    eventually(function()
      return (helper.read(dir .. "/marks") or ""):find("B/Y 1", 1, true)
    end, "B/Y to start")
    p:kill("KILL")
    p:wait()
    local id = sql(home, "SELECT id FROM pipeline_executions")
    local x = show(home, id)
    assert.are.equal("Interrupted", x.status)
    assert.are.equal("Interrupted", action(x, "B", "Y").status)
    local r = proc.run(start("retry", id))
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.are.equal("A/X 1\nB/Y 1\nB/Y 2\nC/Z 1\n", helper.read(dir .. "/marks"))
    x = show(home, id)
    assert.are.equal("Succeeded", x.status)
    assert.are.equal(2, #x.runs)

    -- An interrupted execution is marked Stopped at once by tide stop.
    os.remove(dir .. "/marks")
    p = proc.spawn(start("run", file, "--new"))
    eventually(function()
      return (helper.read(dir .. "/marks") or ""):find("B/Y 1", 1, true)
    end, "B/Y to start again")
    p:kill("KILL")
    p:wait()
    local id2 = sql(home, "SELECT max(id) FROM pipeline_executions")
    r = proc.run(start("stop", id2))
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("stopped", r.stdout)
    x = show(home, id2)
    assert.are.equal("Stopped", x.status)
    assert.are.equal("Abandoned", action(x, "B", "Y").status)
    -- A stopped execution can be retried; its finished actions are kept.
    r = proc.run(start("retry", id2, "--failed-only"))
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("A/X 1\nB/Y 1\nB/Y 2\nC/Z 1\n", helper.read(dir .. "/marks"))
  end)

  it("rolls a stage back to the last execution that succeeded in it", function()
    local dir, home, file = setup([[
return { name = "rb", stages = {
  { name = "Build", actions = { { name = "Make", output = "app", namespace = "m",
    run = function(ctx)
      local f = assert(io.open(ctx.outputs.app .. "/v", "w"))
      f:write(os.getenv("V"))
      f:close()
      return { V = os.getenv("V") }
    end } } },
  { name = "Deploy", on_failure = { result = "ROLLBACK" }, actions = { { name = "Ship",
    input = "app", env = { V = "#{m.V}" }, run = function(ctx)
      local v = assert(io.open(ctx.inputs.app .. "/v")):read("a")
      if v == "bad" then error("bad release") end
      local f = assert(io.open(os.getenv("DIR") .. "/live", "w"))
      f:write(v, " ", ctx.env.V, " ", ctx.execution)
      f:close()
    end } } },
} }
]])
    local function run(v)
      local a = { TIDE, "--home", home, "--plain", "run", file, "--new" }
      a.env = { DIR = dir, V = v, TIDE_VIEW = "none" }
      return proc.run(a)
    end
    assert.are.equal(0, run("good").code)
    local first = sql(home, "SELECT id FROM pipeline_executions")
    local r = run("bad")
    assert.are.equal(1, r.code)
    assert.matches("rolling back to execution " .. first, r.stdout)
    local rollback = sql(home, "SELECT id || ' ' || target || ' ' || status FROM "
      .. "pipeline_executions WHERE kind = 'rollback'")
    local rid = rollback:match("^%d+")
    assert.are.equal(rid .. " " .. first .. " Succeeded", rollback)
    -- The rollback deployed the artifact and variables of the first execution again.
    assert.are.equal("good good " .. rid, helper.read(dir .. "/live"))
    -- A rollback execution is not a rollback target, and a source-less first stage can be.
    local t2 = proc.run({ TIDE, "--home", home, "--plain", "run", file, "--rollback", "Deploy",
      "--target", rid })
    assert.are.equal(2, t2.code)
    assert.matches("is a rollback execution", t2.stderr)
    -- The decision was recorded with the stage's failure, and claimed by the rollback.
    assert.are.equal("Deploy " .. first .. " " .. rid, sql(home, "SELECT stage || ' ' || target "
      .. "|| ' ' || execution FROM pipeline_rollbacks"))
  end)

  local FAILING = [[
return { name = "rbf", mode = os.getenv("MODE"), stages = {
  { name = "Build", actions = { { name = "Make", run = function() end } } },
  { name = "Deploy", on_failure = { result = os.getenv("RESULT") }, actions = { { name = "Ship",
    run = function() if os.getenv("BREAK") then error("broken deploy") end end } } },
} }
]]

  it("does not roll back a failed rollback execution: it just fails", function()
    local _, home, file = setup(FAILING)
    local function run(env)
      local a = { TIDE, "--home", home, "--plain", "run", file, "--new", timeout = 60 }
      a.env = env
      return proc.run(a)
    end
    assert.are.equal(0, run({ RESULT = "ROLLBACK", TIDE_VIEW = "none" }).code)
    -- The rollback child inherits BREAK: its Deploy fails too.
    local r = run({ RESULT = "ROLLBACK", BREAK = "1", TIDE_VIEW = "none" })
    assert.is_false(r.timed_out)
    assert.are.equal(1, r.code)
    assert.are.equal("Failed", sql(home, "SELECT group_concat(status) FROM pipeline_executions "
      .. "WHERE kind = 'rollback'"))
    assert.are.equal("1", sql(home, "SELECT count(*) FROM pipeline_rollbacks"))
    assert.matches("rollback execution %d+ Failed", r.stdout)
  end)

  it("starts a rollback recorded by a tide that died before starting it", function()
    local _, home, file = setup(FAILING)
    local env = { RESULT = "ROLLBACK", TIDE_VIEW = "none" }
    local a = { TIDE, "--home", home, "--plain", "run", file, "--new", env = env }
    assert.are.equal(0, proc.run(a).code)
    local first = sql(home, "SELECT id FROM pipeline_executions")
    -- What a tide killed right after recording its failed stage leaves: a failed execution and
    -- its pending rollback (the stage state and the row are one transaction).
    assert.are.equal(1, proc.run({ TIDE, "--home", home, "--plain", "run", file, "--new",
      env = { RESULT = "FAIL", BREAK = "1", TIDE_VIEW = "none" } }).code)
    local failed = sql(home, "SELECT max(id) FROM pipeline_executions")
    sql(home, "INSERT INTO pipeline_rollbacks (pipeline, stage, target, from_execution, "
      .. "created_us) VALUES ('rbf', 'Deploy', " .. first .. ", " .. failed .. ", 0)")
    local r = proc.run(a)
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("rolling back to execution " .. first, r.stdout)
    local rb = sql(home, "SELECT id || ' ' || status FROM pipeline_executions WHERE kind = "
      .. "'rollback'")
    assert.matches("^%d+ Succeeded$", rb)
    assert.are.equal(rb:match("^%d+"), sql(home, "SELECT execution FROM pipeline_rollbacks"))
    -- Started once: the next run finds nothing pending.
    r = proc.run(a)
    assert.are.equal(0, r.code)
    assert.not_matches("rolling back", r.stdout)
  end)

  it("refuses a manual rollback in PARALLEL mode", function()
    local _, home, file = setup(FAILING)
    local env = { RESULT = "FAIL", MODE = "PARALLEL", TIDE_VIEW = "none" }
    assert.are.equal(0, proc.run({ TIDE, "--home", home, "--plain", "run", file, env = env }).code)
    local id = sql(home, "SELECT id FROM pipeline_executions")
    local r = proc.run({ TIDE, "--home", home, "--plain", "run", file, "--rollback", "Deploy",
      "--target", id, env = env })
    assert.are.equal(2, r.code)
    assert.matches("PARALLEL mode, where stages cannot be rolled back", r.stderr)
    assert.are.equal("1", sql(home, "SELECT count(*) FROM pipeline_executions"))
  end)
end)

describe("tide graph", function()
  it("draws text, DOT and JSON from the declaration", function()
    local _, home, file = setup([[
return { name = "g", stages = {
  { name = "One", actions = { { name = "A", output = "a", run = function() end },
    { name = "B", run_order = 2, input = "a", run = function() end } } },
  { name = "Two", actions = { { name = "C", approval = {} } } },
} }
]])
    local r = t(home, "graph", file)
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("1%. One\n   | 1 A  Invoke  %-> a\n   | 2 B  Invoke  <%- a\n2%. Two", r.stdout)
    r = t(home, "graph", file, "--dot")
    assert.matches('"One/A" %-> "One/B" %[label="a"%];', r.stdout)
    assert.matches('"One/B" %-> "Two/C" %[style=dotted%];', r.stdout)
    r = proc.run({ TIDE, "--home", home, "--json", "graph", file })
    local g = json.decode(r.stdout)
    assert.are.equal("Approval", g.stages[2].actions[1].category)
    -- Nothing ran.
    assert.is_nil(helper.read(home .. "/state.db"))
    helper.write(file, "return { name = 'g', stages = {} }")
    r = t(home, "graph", file)
    assert.are.equal(2, r.code)
    assert.matches("p.lua: stages: a pipeline needs a list of at least one stage", r.stderr)
  end)
end)

describe("tide watch schedules", function()
  it("fires a schedule when it is due and records the tick", function()
    local _, home, file = setup([[
return { name = "cron", triggers = { { schedule = "* * * * *" } }, stages = {
  { name = "Tick", actions = { { name = "T", run = function() print("tick ran") end } } },
} }
]])
    assert.are.equal(0, t(home, "watch", file, "--once").code)
    assert.are.equal("0", sql(home, "SELECT count(*) FROM pipeline_triggers"))
    -- Make the next tick due now, as if a minute had passed.
    sql(home, "UPDATE pipeline_heads SET revision = '1' WHERE url = 'schedule'")
    local r = t(home, "watch", file, "--once")
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("tick ran", r.stdout)
    assert.are.equal("schedule|* * * * *|1970-01-01T00:00:01Z", sql(home,
      "SELECT kind, ref, revision FROM pipeline_triggers"))
    assert.are.equal("Succeeded", sql(home, "SELECT status FROM pipeline_executions"))
  end)
end)
