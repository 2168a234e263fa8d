-- The overhead of a build: a buildspec of 4 phases x 25 `true` commands run by tide.buildspec
-- against one `bash -e` script of the same 100 commands run by proc.run, both in the same
-- sandbox (when this tide has one) and in this same process. The runs come in blocks; each
-- block's ratio is its best build over its best baseline, and the figure is the median of the
-- blocks' ratios. This machine has slow spells that last seconds: a single best of each side
-- over the whole invocation often paired a baseline from a fast spell with builds that had none.
local tide = require("tide")
local proc = require("tide.proc")
local bs = require("tide.buildspec")

local work = arg[1] or error("usage: build.lua WORKDIR [N]")
local blocks = tonumber(arg[2] or "5")
local rounds = tonumber(arg[3] or "8")

-- buildspec.yml names bash, as the baseline does (the figure); sh.yml names no shell, so it runs
-- in /bin/sh as CodeBuild runs such a file (shown for information).
local phases, script = {}, {}
for _, ph in ipairs({ "install", "pre_build", "build", "post_build" }) do
  phases[#phases + 1] = "  " .. ph .. ":"
  phases[#phases + 1] = "    commands:"
  for _ = 1, 25 do
    phases[#phases + 1] = "      - true"
    script[#script + 1] = "true"
  end
end
phases = table.concat(phases, "\n") .. "\n"
local f = assert(io.open(work .. "/buildspec.yml", "w"))
f:write("version: 0.2\nenv:\n  shell: bash\nphases:\n", phases)
f:close()
f = assert(io.open(work .. "/sh.yml", "w"))
f:write("version: 0.2\nphases:\n", phases)
f:close()
f = assert(io.open(work .. "/script.sh", "w"))
f:write(table.concat(script, "\n"), "\n")
f:close()

local sandboxed = proc.run({ "true", sandbox = { writable = { work } }, log = false }) and true

-- Best of n each, the two alternating so that a change of load on the machine touches both.
-- A build does not wait for its shell to exit (the shell ends on its own after the last
-- phase); a short untimed pause after each run lets that exit finish, so that neither the
-- next build nor the next baseline run shares the machine with it.
local function timed(fn)
  local t0 = tide.monotime()
  fn()
  local t = tide.monotime() - t0
  tide.sleep(0.02)
  return t
end

-- The build's own sandbox: the same policy, limits (and so cgroups) included.
local base_sandbox = sandboxed
  and require("tide.buildspec.limits").apply({ network = false, writable = { work } }, {}) or nil

local function run_base()
  local r = proc.run({ "bash", "-e", work .. "/script.sh", cwd = work, log = false,
    sandbox = base_sandbox })
  assert(r.ok)
end
local function run_build(file)
  return function()
    local r = bs.run({ src = work, file = file, project = "bench", quiet = true,
      sandbox = sandboxed })
    assert(r.status == "SUCCEEDED", r.status)
  end
end
local run_bash, run_sh = run_build("buildspec.yml"), run_build("sh.yml")

-- Within a block the three alternate, so that a change of load touches all of them.
local ratios, ratios_sh = {}, {}
local base, build, build_sh = math.huge, math.huge, math.huge
for b = 1, blocks do
  local bb, bu, bs_ = math.huge, math.huge, math.huge
  for _ = 1, rounds do
    bb = math.min(bb, timed(run_base))
    bu = math.min(bu, timed(run_bash))
    bs_ = math.min(bs_, timed(run_sh))
  end
  ratios[b], ratios_sh[b] = bu / bb, bs_ / bb
  base, build, build_sh = math.min(base, bb), math.min(build, bu), math.min(build_sh, bs_)
end
local function median(t)
  table.sort(t)
  local m = (#t + 1) // 2
  return #t % 2 == 1 and t[m] or (t[m] + t[m + 1]) / 2
end
local r, r_sh = median(ratios), median(ratios_sh)
-- The median ratio, the lowest and highest block ratios, the best times, then the same for the
-- buildspec without a shell key.
io.stdout:write(string.format("%.3f %.3f %.3f %.5f %.5f %s %.3f %.5f\n", r, ratios[1],
  ratios[#ratios], build, base, sandboxed and "sandboxed" or "plain", r_sh, build_sh))
