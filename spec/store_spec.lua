-- tide._store: queries over the store of the run that busted itself is (tide records every
-- script it runs, this one included, in TIDE_HOME).
local tide = require("tide")
local runtime = require("tide._runtime")
local store = require("tide._store")

local function find(list, pred)
  for _, v in ipairs(list) do
    if pred(v) then
      return v
    end
  end
end

describe("tide._store", function()
  local run_id = runtime.run_id()

  -- Collect finished task handles between tests (see the style guide's leak gate). NOTE: a task
  -- handle still alive at exit currently trips a uv_close assertion in task.c at lua_close.
  after_each(function()
    collectgarbage()
  end)

  it("sees the run it is part of, running and alive", function()
    assert.is_number(run_id)
    local runs = store.runs(5)
    assert.is_true(#runs >= 1)
    assert.are.equal(run_id, runs[1].id) -- newest first
    local r = store.run(run_id)
    assert.are.equal("running", r.status)
    assert.is_true(r.alive)
    assert.is_true(store.alive(run_id))
    assert.are.equal(runtime.home(), store.home())
    assert.is_truthy(r.name:find("busted", 1, true))
    assert.is_truthy(r.argv:find("busted", 1, true))
    assert.is_nil(r.ended)
    assert.is_nil(r.exit_code)
    assert.is_true(r.started <= tide.now())
  end)

  it("limits and orders runs", function()
    assert.are.equal(1, #store.runs(1))
    local all = store.runs()
    for i = 2, #all do
      assert.is_true(all[i - 1].id > all[i].id)
    end
  end)

  it("returns the fail triple for an unknown run", function()
    local r, msg, code = store.run(987654)
    assert.is_nil(r)
    assert.are.equal("ENOENT", code)
    assert.are.equal("no run 987654 in '" .. store.home() .. "'", msg)
    assert.are.same({}, store.spans(987654))
    assert.is_false(store.alive(987654))
  end)

  it("lists the spans of a run once flushed, finished ones with a duration", function()
    local t = tide.spawn("store-spec-task", function()
      tide.sleep(0.02)
      return 1
    end)
    t:wait()
    assert.is_true(runtime.flush())
    local spans = store.spans(run_id)
    local root = find(spans, function(s) return s.kind == "run" end)
    assert.is_not_nil(root)
    assert.are.equal(0, root.parent)
    assert.are.equal("running", root.status)
    local task = find(spans, function(s) return s.name == "store-spec-task" end)
    assert.is_not_nil(task)
    assert.are.equal("task", task.kind)
    assert.are.equal("ok", task.status)
    assert.is_true(task.duration >= 0.015 and task.duration < 5)
    assert.is_true(task["end"] >= task.start)
    assert.is_nil(task.log)
    -- Every span hangs under a recorded parent, up to the run's root.
    local ids = {}
    for _, s in ipairs(spans) do
      ids[s.id] = true
    end
    for _, s in ipairs(spans) do
      assert.is_true(s.parent == 0 or ids[s.parent], "orphan span " .. s.id)
    end
    for i = 2, #spans do
      assert.is_true(spans[i - 1].start <= spans[i].start)
    end
  end)

  it("gives a span a log path and records it", function()
    local t = tide.spawn("store-spec-log", function()
      tide.sleep(0.01)
    end)
    t:wait()
    assert.is_true(runtime.flush())
    local span = find(store.spans(run_id), function(s) return s.name == "store-spec-log" end)
    local path = store.log_path(run_id, span.id)
    assert.are.equal(string.format("%s/logs/%d/%d.log", store.home(), run_id, span.id), path)
    local f = assert(io.open(path, "w")) -- its directory exists
    f:write("hello\n")
    f:close()
    assert.is_true(runtime.flush())
    span = find(store.spans(run_id), function(s) return s.id == span.id end)
    assert.are.equal(path, span.log)
  end)

  it("raises on misuse", function()
    assert.has_error(function() store.runs("many") end)
    assert.has_error(function() store.run() end)
    assert.has_error(function() store.spans({}) end)
    assert.has_error(function() store.log_path(run_id, 0) end)
  end)
end)
