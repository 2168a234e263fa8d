-- The scheduler seen from Lua: spawn and wait, all, cancel, sleep, timeouts, structured
-- cancellation, pcall not swallowing a cancel, the yield-across-C-boundary errors, and errors
-- that carry a traceback.
local tide = require("tide")

local helper = require("helper")
local raises = helper.raises

describe("tasks", function()
  it("run the main chunk as a task", function()
    assert.is_not_nil(tide.current())
    assert.matches("^tide.Task", tostring(tide.current()))
  end)

  it("spawn, pass arguments and return every result", function()
    local t = tide.spawn(function(a, b)
      tide.sleep(0)
      return a + b, "two", nil, 4
    end, 1, 2)
    assert.are.equal("tide.Task", getmetatable(t).__name)
    local a, b, c, d = t:wait()
    assert.are.same({ 3, "two", nil, 4 }, { a, b, c, d })
    assert.are.equal("done", t:status())
    -- Waiting again returns the same results.
    assert.are.equal(3, (t:wait()))
  end)

  it("take an optional name", function()
    local t = tide.spawn("worker", function() end)
    assert.are.equal("worker", t:name())
    t:wait()
    assert.matches("tasks_spec.lua:%d+$", tide.spawn(function() end):name())
  end)

  it("interleave at blocking calls: only the calling task waits", function()
    local order = {}
    local slow = tide.spawn(function()
      tide.sleep(0.2)
      order[#order + 1] = "slow"
    end)
    local fast = tide.spawn(function()
      tide.sleep(0.05)
      order[#order + 1] = "fast"
    end)
    order[#order + 1] = "main"
    tide.all({ slow, fast })
    assert.are.same({ "main", "fast", "slow" }, order)
  end)

  it("sleep(0) lets every other ready task run first", function()
    local ran = false
    tide.spawn(function()
      ran = true
    end)
    assert.is_false(ran)
    tide.sleep(0)
    assert.is_true(ran)
    assert.has_error(function()
      tide.sleep(-1)
    end)
  end)

  it("all returns first results in order and accepts functions", function()
    local r = tide.all({
      function()
        tide.sleep(0.03)
        return "a"
      end,
      tide.spawn(function()
        return "b", "ignored"
      end),
      function()
        return "c"
      end,
    })
    assert.are.same({ "a", "b", "c" }, r)
    assert.are.same({}, tide.all({}))
    raises("EINPUT", tide.all, { 42 })
  end)

  it("all raises the first failure and cancels the rest", function()
    local slow = tide.spawn(function()
      tide.sleep(10)
    end)
    local err = raises("EBOOM", tide.all, {
      slow,
      function()
        tide.sleep(0.01)
        error(tide.error("EBOOM", "boom"))
      end,
    })
    assert.are.equal("boom", err.message)
    tide.sleep(0)
    assert.are.equal("cancelled", slow:status())
  end)

  it("all times out with ETIMEDOUT and cancels what is left", function()
    local slow = tide.spawn(function()
      tide.sleep(10)
    end)
    local err = raises("ETIMEDOUT", tide.all, { slow }, 0.05)
    assert.matches("^tide.all: ", err.message)
    tide.sleep(0)
    assert.are.equal("cancelled", slow:status())
  end)

  it("wait with a timeout returns nil, 'timeout', 'ETIMEDOUT'; the task keeps running", function()
    local t = tide.spawn(function()
      tide.sleep(0.2)
      return "late"
    end)
    local r, msg, code = t:wait(0.02)
    assert.is_nil(r)
    assert.are.equal("timeout", msg)
    assert.are.equal("ETIMEDOUT", code)
    assert.are.equal("waiting", t:status())
    assert.are.equal("late", t:wait())
  end)

  it("wait_any returns the index of the first finished task", function()
    local a = tide.spawn(function()
      tide.sleep(0.2)
    end)
    local b = tide.spawn(function()
      tide.sleep(0.01)
    end)
    assert.are.equal(2, tide.wait_any({ a, b }))
    local i, msg, code = tide.wait_any({ a }, 0.01)
    assert.is_nil(i)
    assert.are.equal("timeout", msg)
    assert.are.equal("ETIMEDOUT", code)
    a:cancel()
    assert.has_error(function()
      tide.wait_any({ tide.current() })
    end, "a task cannot wait for itself")
  end)

  it("cancel a sleeping task: waiting for it raises ECANCELED", function()
    local reached = false
    local t = tide.spawn(function()
      tide.sleep(10)
      reached = true
    end)
    tide.sleep(0)
    assert.are.equal("waiting", t:status())
    t:cancel()
    local err = raises("ECANCELED", t.wait, t)
    assert.are.equal("task cancelled", err.message)
    assert.are.equal("cancelled", t:status())
    assert.is_false(reached)
    t:cancel() -- idempotent
  end)

  it("cancel a task that has not started: it never runs", function()
    local ran = false
    local t = tide.spawn(function()
      ran = true
    end)
    t:cancel()
    raises("ECANCELED", t.wait, t)
    assert.is_false(ran)
  end)

  it("run <close> handlers of a cancelled task", function()
    local closed = false
    local t = tide.spawn(function()
      local _ <close> = setmetatable({}, { __close = function()
        closed = true
      end })
      tide.sleep(10)
    end)
    tide.sleep(0)
    t:cancel()
    tide.sleep(0)
    assert.is_true(closed)
  end)

  it("cancel children with a cancelled or failed parent", function()
    local child
    local parent = tide.spawn(function()
      child = tide.spawn(function()
        tide.sleep(10)
      end)
      tide.sleep(10)
    end)
    tide.sleep(0)
    parent:cancel()
    tide.sleep(0)
    assert.are.equal("cancelled", child:status())

    local child2
    local failing = tide.spawn(function()
      child2 = tide.spawn(function()
        tide.sleep(10)
      end)
      tide.sleep(0.01)
      error("parent failed")
    end)
    assert.has_error(function()
      failing:wait()
    end)
    tide.sleep(0)
    assert.are.equal("cancelled", child2:status())
  end)

  it("cannot swallow a cancel with pcall", function()
    local caught, after = 0, false
    local t = tide.spawn(function()
      while true do
        local ok = pcall(tide.sleep, 0.01)
        if not ok then
          caught = caught + 1
        end
      end
    end)
    tide.sleep(0.03)
    t:cancel()
    raises("ECANCELED", t.wait, t)
    assert.are.equal("cancelled", t:status())
    assert.is_true(caught >= 1)

    -- Returning normally after catching the cancel still ends the task cancelled.
    local t2 = tide.spawn(function()
      local ok, err = pcall(tide.sleep, 10)
      after = not ok and err.code == "ECANCELED"
      local ok2, err2 = pcall(tide.sleep, 0) -- every later blocking call raises at once
      assert(not ok2 and err2.code == "ECANCELED")
      return "swallowed"
    end)
    tide.sleep(0)
    t2:cancel()
    raises("ECANCELED", t2.wait, t2)
    assert.is_true(after)
  end)

  it("tide.try returns failures but lets a cancel through", function()
    local ok, err = tide.try(function()
      error(tide.error("EX", "x"))
    end)
    assert.is_false(ok)
    assert.are.equal("EX", err.code)
    local t = tide.spawn(function()
      local r = { tide.try(tide.sleep, 10) }
      return "not reached", r
    end)
    tide.sleep(0)
    t:cancel()
    raises("ECANCELED", t.wait, t)
  end)

  it("a task cancelling itself raises at once", function()
    local t = tide.spawn(function()
      tide.current():cancel()
      return "not reached"
    end)
    raises("ECANCELED", t.wait, t)
  end)

  it("refuse to block across a C call boundary", function()
    local ok, err = pcall(table.sort, { 3, 2, 1 }, function(a, b)
      tide.sleep(0)
      return a < b
    end)
    assert.is_false(ok)
    assert.matches("tide.sleep: cannot block here: a C call is on the stack", err)
    ok, err = pcall(string.gsub, "abc", "%w", function(c)
      tide.sleep(0)
      return c
    end)
    assert.is_false(ok)
    assert.matches("cannot block here", err)
    local mt = { __tostring = function()
      tide.sleep(0)
      return "x"
    end }
    ok, err = pcall(tostring, setmetatable({}, mt))
    assert.is_false(ok)
    assert.matches("cannot block here", err)
  end)

  it("refuse to block in a plain coroutine", function()
    local co = coroutine.wrap(function()
      tide.sleep(0)
    end)
    local ok, err = pcall(co)
    assert.is_false(ok)
    assert.matches("tide.sleep: blocking call outside a task", err)
    -- Plain coroutines that do not block work as usual inside tasks.
    local gen = coroutine.wrap(function()
      coroutine.yield(1)
      coroutine.yield(2)
    end)
    assert.are.equal(1, gen())
    assert.are.equal(2, gen())
  end)

  it("fail a task that yields at its own level", function()
    local t = tide.spawn(function()
      coroutine.yield()
    end)
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.matches("coroutine.yield called in a task outside a coroutine", err)
  end)

  it("keep error values intact and record a traceback", function()
    local function inner()
      error(tide.error("EDEEP", "deep failure"))
    end
    local t = tide.spawn(function()
      tide.sleep(0)
      inner()
    end)
    local err = raises("EDEEP", t.wait, t)
    assert.are.equal("deep failure", err.message)
    local e, tb = t:error()
    assert.are.equal(err, e)
    assert.matches("deep failure", tb)
    assert.matches("stack traceback:", tb)
    assert.matches("in %a* ?upvalue 'inner'", tb)
    assert.matches("tasks_spec.lua:%d+", tb)
    local plain = tide.spawn(function()
      error("plain string")
    end)
    assert.is_false((pcall(plain.wait, plain)))
    assert.matches("plain string", (select(2, plain:error())))
  end)

  it("run 10,000 sleeping tasks at once", function()
    local tasks = {}
    for i = 1, 10000 do
      tasks[i] = tide.spawn(function()
        tide.sleep(0.1)
        return i
      end)
    end
    local r = tide.all(tasks)
    assert.are.equal(10000, #r)
    assert.are.equal(10000, r[10000])
  end)
end)

describe("tide.random_hex", function()
  it("gives 2n lowercase hex digits that do not repeat", function()
    local seen = {}
    for _ = 1, 100 do
      local h = tide.random_hex(8)
      assert.matches("^[0-9a-f]+$", h)
      assert.equal(16, #h)
      assert.is_nil(seen[h])
      seen[h] = true
    end
    assert.equal(2, #tide.random_hex(1))
  end)
end)
