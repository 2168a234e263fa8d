-- hello.lua: a first tide script. Four tasks run in parallel, each running real processes;
-- the main chunk is itself a task, so it simply waits for them.
--
--   tide examples/hello.lua
local tide = require("tide")
local proc = require("tide.proc")

local function job(name, script)
  return tide.spawn(name, function()
    local r = proc.run({ "sh", "-c", script, check = true })
    return (r.stdout:gsub("%s+$", ""))
  end)
end

local started = tide.monotime()
local results = tide.all({
  job("system", "uname -sm"),
  job("count", "seq 1 200000 | wc -l"),
  job("checksum", "head -c 4000000 /dev/zero | sha256sum | cut -c1-16"),
  job("nap", "sleep 1 && echo rested"),
})

print(("system   %s"):format(results[1]))
print(("count    %s lines"):format(results[2]))
print(("checksum %s"):format(results[3]))
print(("nap      %s"):format(results[4]))

assert(results[2] == "200000", "seq | wc -l gave " .. results[2])
assert(results[4] == "rested")
-- The four ran side by side: the whole run takes about as long as the slowest one.
print(("all four in %.1f s"):format(tide.monotime() - started))
