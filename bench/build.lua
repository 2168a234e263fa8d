-- The overhead of a build: a buildspec of 4 phases x 25 `true` commands run by tide.buildspec
-- against one `bash -e` script of the same 100 commands run by proc.run, both in the same
-- sandbox (when this tide has one) and in this same process, best of N each.
local tide = require("tide")
local proc = require("tide.proc")
local bs = require("tide.buildspec")

local work = arg[1] or error("usage: build.lua WORKDIR [N]")
local n = tonumber(arg[2] or "20")

local lines = { "version: 0.2", "env:", "  shell: bash", "phases:" }
local script = {}
for _, ph in ipairs({ "install", "pre_build", "build", "post_build" }) do
  lines[#lines + 1] = "  " .. ph .. ":"
  lines[#lines + 1] = "    commands:"
  for _ = 1, 25 do
    lines[#lines + 1] = "      - true"
    script[#script + 1] = "true"
  end
end
local f = assert(io.open(work .. "/buildspec.yml", "w"))
f:write(table.concat(lines, "\n"), "\n")
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
local function run_build()
  local r = bs.run({ src = work, project = "bench", quiet = true, sandbox = sandboxed })
  assert(r.status == "SUCCEEDED", r.status)
end

local base, build = math.huge, math.huge
for _ = 1, n do
  base = math.min(base, timed(run_base))
  build = math.min(build, timed(run_build))
end
io.stdout:write(string.format("%.5f %.5f %s\n", build, base, sandboxed and "sandboxed" or "plain"))
