-- bench/tasks.sh runs this: many tasks sleeping at once, or many processes at once.
--   tide bench/tasks.lua sleep 10000 1   -> 10,000 tasks each tide.sleep(1)
--   tide bench/tasks.lua procs 200 1     -> 200 tasks each proc.run{"sleep", "1"}
-- Prints "wall SECONDS peak_rss_mib MIB".
local tide = require("tide")
local proc = require("tide.proc")

local mode, n, secs = arg[1] or "sleep", tonumber(arg[2] or 10000), tonumber(arg[3] or 1)
local body
if mode == "sleep" then
  body = function()
    tide.sleep(secs)
  end
elseif mode == "procs" then
  local s = tostring(secs)
  body = function()
    assert(proc.run({ "sleep", s }).code == 0)
  end
else
  error("usage: tasks.lua sleep|procs N SECONDS")
end

local t0 = tide.monotime()
local tasks = {}
for i = 1, n do
  tasks[i] = tide.spawn(body)
end
tide.all(tasks)
local wall = tide.monotime() - t0

-- Peak RSS of this process so far (VmHWM), in MiB.
local hwm
for line in io.lines("/proc/self/status") do
  hwm = hwm or tonumber(line:match("^VmHWM:%s*(%d+)"))
end
print(string.format("wall %.3f peak_rss_mib %.1f", wall, (hwm or 0) / 1024))
