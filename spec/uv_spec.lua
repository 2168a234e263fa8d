-- tide.uv is luv on tide's own loop: its handles run beside tasks, and the loop is tide's.
local tide = require("tide")
local uv = require("tide.uv")

describe("tide.uv", function()
  it("runs luv callbacks on the host loop while a task waits", function()
    local fired = 0
    local timer = uv.new_timer()
    timer:start(10, 10, function()
      fired = fired + 1
      if fired == 3 then
        timer:stop()
        timer:close()
      end
    end)
    tide.sleep(0.2)
    assert.equal(3, fired)
  end)

  it("refuses to run or stop the loop tide owns", function()
    for _, name in ipairs({ "run", "stop", "loop_close" }) do
      local ok, err = pcall(uv[name])
      assert.is_false(ok)
      assert.matches("tide runs the loop itself", err, 1, true)
    end
  end)

  it("refuses a blocking call inside a luv callback", function()
    local result
    local timer = uv.new_timer()
    timer:start(0, 0, function()
      result = table.pack(pcall(tide.sleep, 0))
      timer:close()
    end)
    tide.sleep(0.05)
    assert.is_false(result[1])
    assert.matches("blocking call outside a task", result[2], 1, true)
  end)
end)
