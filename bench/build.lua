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

local function best(fn)
  local b = math.huge
  for _ = 1, n do
    local t0 = tide.monotime()
    fn()
    b = math.min(b, tide.monotime() - t0)
  end
  return b
end

local base = best(function()
  local r = proc.run({ "bash", "-e", work .. "/script.sh", cwd = work, log = false,
    sandbox = sandboxed and { network = false, writable = { work } } or nil })
  assert(r.ok)
end)
local build = best(function()
  local r = bs.run({ src = work, project = "bench", quiet = true, sandbox = sandboxed })
  assert(r.status == "SUCCEEDED", r.status)
end)
io.stdout:write(string.format("%.4f %.4f %s\n", build, base, sandboxed and "sandboxed" or "plain"))
