-- examples/pipeline: the calc pipeline end to end over a local git repository: source, build
-- with unit tests and a report, an approval answered here, a deploy to a local directory.
local helper = require("helper")
local proc = require("tide.proc")
local tide = require("tide")
local json = require("tide.json")

local TIDE = helper.tide
local EXAMPLE = "examples/pipeline/"

local function sql(home, query)
  return (proc.run({ "sqlite3", home .. "/state.db", query }).stdout:gsub("\n$", ""))
end

describe("examples/pipeline", function()
  it("builds, tests, waits for approval and deploys calc", function()
    local dir = helper.tmpdir()
    local home = dir .. "/home"
    local env = { CALC_REPO = dir .. "/app", TIDE_VIEW = "none" }
    local setup = proc.run({ TIDE, "--home", home, EXAMPLE .. "setup.lua", dir, env = env })
    assert.are.equal(0, setup.code, setup.stderr)
    local commit = setup.stdout:match("(%x+)\n$")

    -- The graph is drawn from the declaration alone.
    local g = proc.run({ TIDE, "--home", home, "graph", EXAMPLE .. "pipeline.lua", env = env })
    assert.are.equal(0, g.code, g.stderr)
    assert.matches("3%. Release", g.stdout)
    assert.matches("Local  Invoke %(deploy_dir%)  <%- dist", g.stdout)

    local p = proc.spawn({ TIDE, "--home", home, "--plain", "run", EXAMPLE .. "pipeline.lua",
      "--var", "DEPLOY_DIR=" .. dir .. "/www", env = env })
    local id
    for _ = 1, 300 do
      id = sql(home, "SELECT execution FROM pipeline_approvals WHERE status = 'Pending'")
      if id ~= "" then
        break
      end
      tide.sleep(0.05)
    end
    assert.are_not.equal("", id, "the approval never came")
    -- Nothing is deployed before the approval.
    assert.is_nil(helper.read(dir .. "/www/current/VERSION"))
    local a = proc.run({ TIDE, "--home", home, "approve", id, "Release/Approve", "--summary",
      "tests pass" })
    assert.are.equal(0, a.code, a.stderr)
    local r = p:wait()
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("ok   evaluates", r.stdout)
    assert.are.equal("1.0.0\n", helper.read(dir .. "/www/current/VERSION"))

    local shown = proc.run({ TIDE, "--home", home, "--json", "show", id })
    local x = json.decode(shown.stdout).pipeline
    assert.are.equal("Succeeded", x.status)
    assert.are.equal(commit, x.revisions.Checkout)
    local build = x.stages[2].actions[1]
    assert.are.equal("UnitTests", build.name)
    assert.are.equal("1.0.0", build.outputs.VERSION)
    assert.are.equal("unit", build.details.reports[1].name)
    assert.is_truthy(build.artifacts.dist.sha256 or build.artifacts.dist.path)
    assert.are.equal("SUCCEEDED", build.details.build_status)
    -- The report of the sandboxed build: the four unit tests, all passed.
    local summary = build.details.reports[1].files[1]
    assert.are.equal(4, summary.total)
    assert.are.equal(4, summary.SUCCEEDED)
    local deploy = x.stages[4].actions[1]
    assert.matches("/www/releases/1%.0%.0%-" .. id .. "$", deploy.outputs.RELEASE)
    -- What the build put in its artifact is what went live.
    assert.is_truthy(helper.read(deploy.outputs.RELEASE .. "/calc.lua"))
    assert.are.equal("1.0.0\n", helper.read(deploy.outputs.RELEASE .. "/VERSION"))
    local text = proc.run({ TIDE, "--home", home, "show", id }).stdout
    assert.matches("report unit: 4 tests, 0 failed", text)
  end)
end)
