-- SIGKILL of a running pipeline, many times: real tide processes killed at random points, each
-- time started again; the store stays sound and no action recorded as finished runs again.
-- Actions append markers (stage/action, attempt, start|done) to a file from Lua, so they die
-- with their tide and nothing writes after a kill.
local helper = require("helper")
local proc = require("tide.proc")
local json = require("tide.json")

local TIDE = helper.tide

local PIPELINE = [[
local tide = require("tide")
local marks = os.getenv("MARKS")
local function mark(ctx, what)
  local f = assert(io.open(marks, "a"))
  f:write(string.format("%s/%s %d %s\n", ctx.stage, ctx.action, ctx.attempt, what))
  f:close()
end
local function step(ctx)
  mark(ctx, "start")
  tide.sleep(0.02 + math.random() * 0.06)
  mark(ctx, "done")
  return { AT = tostring(ctx.attempt) }
end
local stages = {}
for s = 1, 6 do
  local actions = {}
  for a = 1, 5 do
    actions[a] = { name = "A" .. a, run_order = (a - 1) // 2 + 1, run = step }
  end
  stages[s] = { name = "S" .. s, actions = actions }
end
stages[2].actions[1].output = "art"
stages[2].actions[1].run = function(ctx)
  local f = assert(io.open(ctx.outputs.art .. "/f", "w"))
  f:write("x")
  f:close()
  return step(ctx)
end
stages[3].actions[1].input = "art"
return { name = "killme", stages = stages }
]]

local function sql(home, query)
  return proc.run({ "sqlite3", home .. "/state.db", query }).stdout
end

local function tide_json(home, ...)
  local r = proc.run({ TIDE, "--home", home, "--json", ... })
  return r.code == 0 and json.decode(r.stdout) or nil, r
end

describe("a pipeline killed with SIGKILL", function()
  it("continues where it was, never re-running a finished action", function()
    local dir = helper.tmpdir()
    local home, marks, file = dir .. "/home", dir .. "/marks", dir .. "/p.lua"
    helper.write(file, PIPELINE)
    helper.write(marks, "")
    math.randomseed(os.time())
    local kills, r = 0, nil
    while not r do
      local p = proc.spawn({ TIDE, "--home", home, "--plain", "run", file,
        env = { MARKS = marks } })
      -- Killed at a random point, or let it finish after enough kills.
      r = p:wait(kills < 40 and (0.015 + math.random() * 0.1) or nil)
      if not r then
        p:kill("KILL")
        p:wait()
        kills = kills + 1
        -- A kill during the exit of a tide that had finished the execution ends the test too.
        if sql(home, "SELECT status FROM pipeline_executions") == "Succeeded\n" then
          break
        end
      end
    end
    assert.is_true(r == nil or r.code == 0, r and (r.stdout .. r.stderr))
    assert.is_true(kills >= 10, "only " .. kills .. " kills")
    io.stderr:write(string.format("pipeline_kill_spec: %d kills\n", kills))

    assert.are.equal("ok\n", sql(home, "PRAGMA integrity_check"))
    assert.are.equal("1|Succeeded\n", sql(home, "SELECT count(*), status FROM pipeline_executions"))

    local runs = tide_json(home, "runs", "--pipeline", "killme", "--limit", "100")
    -- Each run that got as far as the execution is listed under it (a kill may come earlier).
    assert.is_true(#runs >= 1 and #runs <= kills + 1)
    local rows = proc.run({ "sqlite3", "-json", home .. "/state.db",
      "SELECT stage, action, status, attempt FROM pipeline_actions;" })
    local actions = json.decode(rows.stdout)
    assert.are.equal(30, #actions)
    local last = {}
    for _, a in ipairs(actions) do
      assert.are.equal("Succeeded", a.status)
      last[a.stage .. "/" .. a.action] = a.attempt
    end
    -- Every attempt that ran was recorded before it ran, and none ran after the recorded one.
    local starts, dones = {}, {}
    for line in helper.read(marks):gmatch("[^\n]+") do
      local id, attempt, what = line:match("^(%S+) (%d+) (%a+)$")
      attempt = tonumber(attempt)
      assert.is_truthy(last[id], line)
      assert.is_true(attempt <= last[id], "ran after it had finished: " .. line)
      local key = id .. " " .. attempt
      local t = what == "start" and starts or dones
      assert.is_nil(t[key], "twice: " .. line)
      t[key] = true
    end
    for id, attempt in pairs(last) do
      assert.is_true(dones[id .. " " .. attempt], id .. " finished attempt " .. attempt)
    end
  end)
end)
