-- The calc pipeline: source from a local git repository, a build that runs the unit tests and
-- records their report, a manual approval, and a deploy to a local directory written in Lua.
--
--   tide examples/pipeline/setup.lua /tmp/calc              # the repository, once
--   CALC_REPO=/tmp/calc/app tide run examples/pipeline/pipeline.lua --var DEPLOY_DIR=/tmp/calc/www
--   tide approve RUN Release/Approve --summary "looks good"  # from another terminal
local fs = require("tide.fs")
local proc = require("tide.proc")
local uv = require("tide.uv")

local repo = os.getenv("CALC_REPO") or "calc"

-- A kind of action of our own: a release directory per version, and a "current" link switched
-- atomically, then a smoke test of what is now live.
local function deploy_dir(config)
  return {
    run = function(ctx)
      local root = ctx.var(config.to)
      local version = ctx.var("#{build.VERSION}")
      local release = string.format("%s/releases/%s-%d", root, version, ctx.execution)
      assert(fs.mkdir_p(root .. "/releases"))
      fs.rm_r(release)
      assert(fs.copy_tree(ctx.inputs.dist, release))
      local tmp = root .. "/current.new"
      os.remove(tmp)
      assert(uv.fs_symlink(release, tmp))
      assert(os.rename(tmp, root .. "/current"))
      local r = proc.run({ "lua5.4", root .. "/current/main.lua", "2 + 3", check = true })
      if r.stdout ~= "5\n" then
        error("smoke test: expected 5, got " .. r.stdout)
      end
      ctx.log("released %s to %s", version, release)
      return { RELEASE = release }
    end,
  }
end

return {
  name = "calc",
  mode = "SUPERSEDED",
  variables = {
    DEPLOY_DIR = { default = "/tmp/calc-www", description = "where releases go" },
  },
  triggers = {
    { git = repo, branches = { "main" }, paths = { "src/**", "test/**", "buildspec.yml" } },
  },
  kinds = { deploy_dir = deploy_dir },
  stages = {
    { name = "Source", actions = {
      { name = "Checkout", source = { git = repo, branch = "main" }, output = "src",
        namespace = "SourceVariables" },
    } },
    { name = "Build", actions = {
      { name = "UnitTests", build = "buildspec.yml",
        input = "src", output = "dist", namespace = "build",
        env = { COMMIT = "#{SourceVariables.CommitId}" } },
    } },
    { name = "Release", actions = {
      { name = "Approve", approval = { timeout = "24h",
        summary = "release #{build.VERSION} of #{SourceVariables.CommitId}" } },
    } },
    { name = "Deploy",
      on_failure = { result = "RETRY", retry_mode = "FAILED_ACTIONS" },
      actions = {
        { name = "Local", input = "dist", namespace = "deploy",
          deploy_dir = { to = "#{variables.DEPLOY_DIR}" } },
      } },
  },
}
