-- Real-world buildspecs run offline, sandboxed with the network off: what NOTES.md marks as
-- luacheck: ignore 631 (buildspecs written out in full)
-- runnable runs; what needs the network, AWS or a toolchain fails cleanly (FAILED, never FAULT).
local h = require("spec.helper")
local bs = require("tide.buildspec")

local CORPUS = (os.getenv("TIDE_SOURCE_DIR") or ".") .. "/spec/fixtures/corpus/buildspec/"

local function run(name, prepare)
  local src = h.tmpdir()
  -- As root, sandboxed commands run as an unprivileged uid that must be able to write here.
  os.execute("chmod 777 " .. src)
  if prepare then
    h.sh("cd " .. src .. " && " .. prepare)
  end
  local lines = {}
  local r = bs.run({ file = CORPUS .. name, src = src, project = "corpus", timeout = 120,
    on_line = function(l) lines[#lines + 1] = l end })
  return r, table.concat(lines, "\n"), src
end

local function phase(r, ptype)
  for _, p in ipairs(r.phases) do
    if p.type == ptype then
      return p
    end
  end
end

describe("corpus buildspecs, run offline", function()
  it("runs GSA search-gov end to end", function()
    local r, out = run("GSA__search-gov__buildspec_searchgov.yml",
      "touch appspec.yml buildspec_searchgov.yml && mkdir cicd-scripts")
    assert.equal("SUCCEEDED", r.status, out)
    assert.equal("ruby", r.runtimes[1].name)
  end)

  it("runs pre_build before build although the file lists build first", function()
    local r, out = run(
      "aws-samples__ecs-blue-green-deployment-with-codedeploy__iac_pipeline_codebuild_buildspec-app.yaml")
    assert.equal("FAILED", r.status)
    assert.equal("SUCCEEDED", phase(r, "PRE_BUILD").status)
    assert.equal("FAILED", phase(r, "BUILD").status)
    assert.truthy(out:find(r.id, 1, true))
    assert.is_true(out:find("Entering phase PRE_BUILD", 1, true)
      < out:find("Entering phase BUILD", 1, true))
  end)

  it("fails the build phase when finally fails (radien)", function()
    local r = run("radien-org__radien-ce__buildspecs_core-distribution.yml")
    local b = phase(r, "BUILD")
    assert.equal("FAILED", b.status)
    assert.is_true(#b.finally >= 1)
    assert.equal("FAILED", r.status)
  end)

  it("runs finally after the failing mvn (aws-sdk-java-v2) and never faults", function()
    local r = run("aws__aws-sdk-java-v2__buildspecs_integ-test.yml")
    assert.equal("FAILED", r.status)
    assert.equal("FAILED", phase(r, "BUILD").status)
    assert.is_true(#phase(r, "BUILD").finally >= 1)
  end)

  it("fails cleanly in pre_build without the AWS CLI (jonas-fastapi)", function()
    local r = run("kyungtaek-jonas-lim__jonas-fastapi-master__buildspec-sample.yml")
    assert.equal("FAILED", r.status)
    assert.equal("FAILED", phase(r, "PRE_BUILD").status)
  end)

  it("names the missing parameter of a file that needs Parameter Store", function()
    local err = h.raises("EINPUT", run, "aws-samples__aws-codebuild-samples__buildspecs_sonarqube.yml")
    assert.matches("buildspecs_sonarqube%.yml:%d+: env%.parameter%-store%.SONARQUBE_TOKEN: "
      .. "parameter 'SonarQubeToken'", err.message)
  end)
end)
