-- tide.buildspec: parsing, validation and planning, with the real-world corpus and hostile input.
-- luacheck: ignore 631 (buildspecs written out in full)
local h = require("spec.helper")
local bs = require("tide.buildspec")
local batch = require("tide.buildspec.batch")

local CORPUS = (os.getenv("TIDE_SOURCE_DIR") or ".") .. "/spec/fixtures/corpus/buildspec"

local function parse(text)
  return bs.parse(text, { name = "bs.yml" })
end

local function rejects(text, pattern)
  local err = h.raises("EINPUT", parse, text)
  assert.matches(pattern, err.message)
  return err
end

local function corpus(name)
  local path = CORPUS .. "/" .. name
  return bs.validate(path), path
end

describe("buildspec corpus", function()
  local names = {}
  for line in io.popen("ls " .. CORPUS):lines() do
    names[#names + 1] = line
  end

  it("holds the 25 buildspecs", function()
    assert.equal(25, #names)
  end)

  for _, name in ipairs(names) do
    it("parses, validates and plans " .. name, function()
      local spec = corpus(name)
      local plan = bs.plan(spec)
      assert.is_true(#plan >= 2)
      assert.matches("^buildspec ", plan[1])
    end)
  end

  it("reads version 0.1 as one shell per command", function()
    local spec = corpus("aws__aws-toolkit-vscode__buildspec.yml")
    assert.equal("0.1", spec.version)
    assert.truthy(table.concat(bs.plan(spec), "\n"):find("own shell", 1, true))
  end)

  it("warns about the misplaced keys real files carry, and goes on", function()
    local spec = corpus("GSA__i14y__buildspec_i14y.yml")
    assert.equal(1, #spec.warnings)
    assert.matches("exported%-variables belongs under 'env'", spec.warnings[1])
    spec = corpus("aws-amplify__amplify-codegen__.codebuild_pr_workflow.yml")
    assert.matches("env.compute%-type", spec.warnings[1])
  end)

  it("keeps runtime versions as written (6.0, 3.10)", function()
    local spec = parse("version: 0.2\nphases:\n  install:\n    runtime-versions:\n"
      .. "      dotnet: 6.0\n      python: 3.10\n      nodejs: 22\n")
    local rt = spec.phases.install.runtimes
    assert.same({ "6.0", "3.10", "22" }, { rt[1].version, rt[2].version, rt[3].version })
  end)

  it("orders phases by CodeBuild's order, not the file's", function()
    local spec = corpus(
      "aws-samples__ecs-blue-green-deployment-with-codedeploy__iac_pipeline_codebuild_buildspec-app.yaml")
    local plan = table.concat(bs.plan(spec), "\n")
    assert.is_true(plan:find("PRE_BUILD", 1, true) < plan:find("\nBUILD", 1, true))
  end)

  it("expands the s2n build-matrix to 12 builds", function()
    local spec = corpus("aws__s2n-tls__codebuild_spec_buildspec_ubuntu_integrationv2.yml")
    local tasks = batch.tasks(spec)
    assert.equal(12, #tasks)
    local seen = {}
    for _, t in ipairs(tasks) do
      seen[t.variables.S2N_BUILD_PRESET .. "|" .. t.variables.INTEGV2_TEST] = true
    end
    local n = 0
    for _ in pairs(seen) do
      n = n + 1
    end
    assert.equal(12, n)
  end)

  it("reads the esdk-js release graph with its dependencies", function()
    local spec = corpus("aws__aws-encryption-sdk-javascript__codebuild_release_prod-release.yml")
    assert.equal("build-graph", spec.batch.kind)
    assert.is_true(spec.batch.fast_fail)
    local by = {}
    for _, t in ipairs(spec.batch.tasks) do
      by[t.identifier] = t
    end
    assert.same({ "version" }, by.publish.depend_on)
    assert.equal(5, #by.version.depend_on)
  end)

  it("accepts absolute artifact and report paths (outside the source on purpose)", function()
    local spec = corpus("aws__aws-toolkit-jetbrains__buildspec_linuxTests.yml")
    assert.equal("/", spec.artifacts.base_directory:sub(1, 1))
  end)

  it("strips trailing comments and keeps '#' inside values", function()
    local spec = corpus("ashnike__bipoflask__buildspec.yml")
    for _, ph in pairs(spec.phases) do
      for _, c in ipairs(ph.commands) do
        assert.is_nil(c:find("%s#%s"))
      end
    end
  end)
end)

describe("buildspec errors", function()
  it("names file, line and column of malformed YAML", function()
    local err = rejects("version: 0.2\nphases:\n  build:\n    commands:\n   - [oops\n", "^bs%.yml:%d+:%d+:")
    assert.is_true(err.yaml)
  end)

  it("requires version and phases", function()
    rejects("phases:\n  build:\n    commands: [ls]\n", "^bs%.yml:1:1: version: required")
    rejects("version: 0.2\n", "^bs%.yml:1:1: phases: required")
    rejects("version: 0.3\nphases: {}\n", "^bs%.yml:1:10: version: expected 0%.1 or 0%.2")
  end)

  it("names an unknown phase with a suggestion", function()
    rejects("version: 0.2\nphases:\n  biuld:\n    commands:\n      - ls\n",
      "^bs%.yml:3:3: phases%.biuld: unknown key %(did you mean 'build'%?%)$")
  end)

  it("names a typo in a key", function()
    rejects("version: 0.2\nphases:\n  build:\n    comands:\n      - ls\n",
      "^bs%.yml:4:5: phases%.build%.comands: unknown key %(did you mean 'commands'%?%)")
    rejects("version: 0.2\nenv:\n  varaibles:\n    A: b\nphases: {}\n",
      "^bs%.yml:3:3: env%.varaibles: unknown key %(did you mean 'variables'%?%)")
    rejects("version: 0.2\nphase:\n  build: {}\n", "^bs%.yml:2:1: phase: unknown key")
  end)

  it("names a wrong type", function()
    rejects("version: 0.2\nphases:\n  build:\n    commands: echo hi\n",
      "^bs%.yml:4:15: phases%.build%.commands: expected a list of commands, got a string")
    rejects("version: 0.2\nphases:\n  build:\n    commands:\n      - echo a: b\n",
      "^bs%.yml:5:9: phases%.build%.commands%[1%]: expected a string, got a mapping %(quote")
    rejects("version: 0.2\nphases:\n  build:\n    on-failure: RETRY\n    commands: [ls]\n",
      "phases%.build%.on%-failure: expected ABORT or CONTINUE")
    rejects("version: 0.2\nphases:\n  build:\n    finally: [ls]\n",
      "phases%.build%.commands: required")
    rejects("version: 0.2\nenv:\n  shell: zsh\nphases: {}\n", "^bs%.yml:3:10: env%.shell")
    rejects("- a\n- b\n", "the buildspec must be a mapping")
    rejects("version: 0.2\nphases: {}\nartifacts:\n  discard-paths: maybe\n  files: [a]\n",
      "artifacts%.discard%-paths: expected yes or no")
  end)

  it("refuses paths that leave the source directory", function()
    rejects("version: 0.2\nphases: {}\nartifacts:\n  files:\n    - '../x/**/*'\n",
      "^bs%.yml:5:7: artifacts%.files%[1%]: '%.%./x/%*%*/%*' leaves the source directory")
    rejects("version: 0.2\nphases: {}\nartifacts:\n  files: [a]\n  base-directory: a/../../b\n",
      "artifacts%.base%-directory: 'a/%.%./%.%./b' leaves")
    rejects("version: 0.2\nphases: {}\nreports:\n  r:\n    files: ['x/../../y']\n",
      "reports%.r%.files%[1%]")
    rejects("version: 0.2\nphases: {}\ncache:\n  paths: ['../up/**/*']\n", "cache%.paths%[1%]")
  end)

  it("requires top-level artifact files even with only secondary artifacts", function()
    rejects("version: 0.2\nphases: {}\nartifacts:\n  secondary-artifacts:\n    a:\n      files: [x]\n",
      "artifacts%.files: required %(also when only secondary artifacts")
  end)

  it("refuses reserved names and bad references", function()
    rejects("version: 0.2\nenv:\n  variables:\n    CODEBUILD_X: a\nphases: {}\n",
      "^bs%.yml:4:18: env%.variables%.CODEBUILD_X: names starting with CODEBUILD_ are reserved")
    rejects("version: 0.2\nenv:\n  secrets-manager:\n    V: 'S::AWSCURRENT:abc'\nphases: {}\n",
      "^bs%.yml:4:8: env%.secrets%-manager%.V: bad reference.*mutually exclusive")
  end)

  it("checks report formats case-insensitively", function()
    local spec = parse("version: 0.2\nphases: {}\nreports:\n  rg:\n    files: [a.xml]\n"
      .. "    file-format: junitxml\n")
    assert.equal("JUNITXML", spec.reports[1].format)
    spec = parse("version: 0.2\nphases: {}\nreports:\n  rg:\n    files: [a.xml]\n")
    assert.equal("JUNITXML", spec.reports[1].format)
    rejects("version: 0.2\nphases: {}\nreports:\n  rg:\n    files: [a]\n    file-format: XUNIT\n",
      "reports%.rg%.file%-format: unknown format 'XUNIT'")
  end)

  it("checks batch graphs", function()
    rejects("version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      depend-on: [b]\n",
      "depend%-on: no task 'b'")
    rejects("version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      depend-on: [b]\n"
      .. "    - identifier: b\n      depend-on: [a]\n", "cycle")
    rejects("version: 0.2\nbatch:\n  build-list:\n    - identifier: a\n    - identifier: a\n",
      "'a' is used twice")
    rejects("version: 0.2\nbatch:\n  fast-fail: true\n", "needs exactly one of")
  end)
end)

describe("secrets-manager references", function()
  it("splits the four fields, empty ones positional", function()
    assert.same({ id = "MySecret", json_key = "password" }, bs.secret_ref("MySecret:password"))
    assert.same({ id = "MySecret", stage = "AWSPREVIOUS" }, bs.secret_ref("MySecret::AWSPREVIOUS"))
    assert.same({ id = "MySecret", version_id = "u-1" }, bs.secret_ref("MySecret:::u-1"))
  end)

  it("reads an ARN's seven fields as the id", function()
    local arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
    assert.same({ id = arn, json_key = "user" }, bs.secret_ref(arn .. ":user"))
    assert.same({ id = arn }, bs.secret_ref(arn))
    assert.is_nil(bs.secret_ref("arn:aws:secretsmanager:x"))
    assert.is_nil(bs.secret_ref(":k"))
    assert.is_nil(bs.secret_ref("a:b:c:d:e"))
  end)
end)

describe("hostile buildspecs", function()
  local cases = {
    { "an alias bomb", (function()
      local t = { "version: 0.2", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]" }
      for i = 1, 12 do
        t[#t + 1] = string.format("a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]",
          i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1)
      end
      return table.concat(t, "\n") .. "\nphases: {}\n"
    end)() },
    { "deep nesting", "version: 0.2\nphases: " .. string.rep("[", 300) .. string.rep("]", 300) },
    { "tabs", "version: 0.2\nphases:\n\tbuild:\n\t\tcommands: [ls]\n" },
    { "binary", "version: 0.2\n\0\1\2\255\254" },
    { "a scalar", "just text" },
    { "an empty file", "" },
    { "a null phase list", "version: 0.2\nphases:\n  build:\n    commands:\n" },
    { "a null command", "version: 0.2\nphases:\n  build:\n    commands:\n      -\n" },
    { "a nested list command", "version: 0.2\nphases:\n  build:\n    commands:\n      - [a, b]\n" },
    { "a huge key", "version: 0.2\n" .. string.rep("k", 100000) .. ": 1\nphases: {}\n" },
    { "duplicate keys", "version: 0.2\nphases: {}\nphases: {}\n" },
    { "a tag", "version: 0.2\nphases: !Ref x\n" },
    { "a number as phases", "version: 0.2\nphases: 3\n" },
    { "a CRLF file with an error", "version: 0.2\r\nphases:\r\n  bild: {}\r\n" },
  }
  for _, c in ipairs(cases) do
    it("rejects " .. c[1] .. " with a one-line EINPUT", function()
      local err = h.raises("EINPUT", parse, c[2])
      assert.matches("^bs%.yml", err.message)
      assert.is_nil(err.message:find("\n", 1, true))
    end)
  end

  it("accepts a command with every special character once quoted", function()
    local spec = parse("version: 0.2\nphases:\n  build:\n    commands:\n"
      .. "      - 'echo \"a: b\" * & { } | > # $(x) `y`'\n")
    assert.equal("echo \"a: b\" * & { } | > # $(x) `y`", spec.phases.build.commands[1])
  end)
end)
