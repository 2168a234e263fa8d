-- tide runs / show / logs end to end: the real binary (TIDE_BIN) on a fresh --home per test,
-- scripts run as `tide FILE.lua`, then the commands read what they recorded.
local helper = require("helper")
local json = require("tide.json")
local tide = require("tide")

local TIDE = helper.tide

local write, read = helper.write, helper.read

--- Runs tide with home and a shell-quoted argument string; returns stdout, stderr, exit code.
local function run(home, args, env)
  local errfile = os.tmpname()
  local out, rc = helper.sh(string.format("%s %s --home '%s' %s 2>'%s'", env or "", TIDE, home,
    args, errfile))
  local err = read(errfile)
  os.remove(errfile)
  return out, err, rc
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do
    t[#t + 1] = l
  end
  return t
end

-- Spawns tasks: one fine, one failing (caught), one nested; then a "process" whose output log
-- it writes itself through tide._store, the way tide.proc does.
local SCRIPT = [[
local tide = require("tide")
local runtime = require("tide._runtime")
local store = require("tide._store")
local fast = tide.spawn("fast", function() tide.sleep(0.02) return 1 end)
local bad = tide.spawn("bad", function() tide.sleep(0.01) error("boom") end)
local outer = tide.spawn("outer", function()
  tide.spawn("inner", function() tide.sleep(0.03) end):wait()
end)
assert(not pcall(function() return bad:wait() end))
fast:wait()
outer:wait()
local function logged(name, text)
  tide.spawn(name, function()
    runtime.flush()
    local id
    for _, s in ipairs(store.spans(runtime.run_id())) do
      if s.name == name then id = s.id end
    end
    local f = assert(io.open(assert(store.log_path(runtime.run_id(), id)), "w"))
    f:write(text)
    f:close()
  end):wait()
end
logged("compile", "compiling\nok\n")
logged("test", "3 tests passed\n")
fast, bad, outer = nil, nil, nil
collectgarbage()
print("script done")
]]

describe("tide runs/show/logs", function()
  local dir, home

  before_each(function()
    dir = helper.tmpdir()
    home = dir .. "/home"
  end)

  after_each(function()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  local function script(name, text)
    local path = dir .. "/" .. name
    write(path, text)
    return path
  end

  it("records a script's tasks and shows them", function()
    local out, err, rc = run(home, script("tasks.lua", SCRIPT))
    assert.are.equal(0, rc, err)
    assert.are.equal("script done\n", out)

    out, err, rc = run(home, "runs")
    assert.are.equal(0, rc, err)
    local l = lines(out)
    assert.are.equal(2, #l)
    assert.is_truthy(l[1]:match("^ID%s+STATUS%s+STARTED%s+DURATION%s+NAME$"))
    local row = "^%s*1%s+succeeded%s+%d+%-%d+%-%d+ [%d:]+%s+%d+%.%d%ds%s+.*tasks%.lua$"
    assert.is_truthy(l[2]:match(row), l[2])

    out, err, rc = run(home, "show 1")
    assert.are.equal(0, rc, err)
    l = lines(out)
    assert.is_truthy(l[1]:match("^run 1 succeeded  .*tasks%.lua"), l[1])
    assert.is_truthy(l[2]:match("^✓ run  .*tasks%.lua  %d+%.%d%ds$"), l[2])
    -- The main chunk is the run itself; its tasks are children of the run's span, in start
    -- order, deeper ones indented further.
    local want = {
      "^  ✓ task fast  %d+%.%d%ds$",
      "^  ✗ task bad  %d+%.%d%ds  error$",
      "^  ✓ task outer  ",
      "^    ✓ task inner  ",
      "^  ✓ task compile  ",
      "^  ✓ task test  ",
    }
    for i, pat in ipairs(want) do
      assert.is_truthy(l[2 + i] and l[2 + i]:match(pat), "line " .. (2 + i) .. ": " ..
        tostring(l[2 + i]))
    end
    assert.are.equal(2 + #want, #l)

    -- --plain gives ASCII marks; --json the same data.
    out = run(home, "show 1 --plain")
    assert.is_truthy(out:find("\n  x task bad ", 1, true))
    out, err, rc = run(home, "--json show 1")
    assert.are.equal(0, rc, err)
    local doc = json.decode(out)
    assert.are.equal(1, doc.run.id)
    assert.are.equal("succeeded", doc.run.status)
    assert.are.equal(0, doc.run.exit_code)
    assert.are.equal(7, #doc.spans)
    local byname, root = {}, nil
    for _, s in ipairs(doc.spans) do
      byname[s.name] = s
      if s.kind == "run" then
        root = s
      end
    end
    assert.are.equal(byname.outer.id, byname.inner.parent)
    assert.are.equal("error", byname.bad.status)
    assert.are.equal(root.id, byname.fast.parent)
    assert.is_true(byname.inner.duration >= 0.025)

    out = run(home, "runs --json")
    doc = json.decode(out)
    assert.are.equal(1, #doc)
    assert.are.equal("succeeded", doc[1].status)
  end)

  it("prints process output: every span with a header, or one span bare", function()
    local _, err, rc = run(home, script("logs.lua", SCRIPT))
    assert.are.equal(0, rc, err)
    local out
    out, err, rc = run(home, "logs 1")
    assert.are.equal(0, rc, err)
    local first, second = out:match("^==> span (%d+): task compile %(ok%) <==\ncompiling\nok\n\n"
      .. "==> span (%d+): task test %(ok%) <==\n3 tests passed\n$")
    assert.is_not_nil(first, out)
    out, err, rc = run(home, "logs 1 " .. second)
    assert.are.equal(0, rc, err)
    assert.are.equal("3 tests passed\n", out)
    out = run(home, "--json logs 1")
    local doc = json.decode(out)
    assert.are.equal(2, #doc)
    assert.are.equal("compiling\nok\n", doc[1].output)
    assert.are.equal(tonumber(first), doc[1].span)
    -- A span without output, and one that does not exist.
    out, err, rc = run(home, "logs 1 1")
    assert.are.equal(2, rc)
    assert.are.equal("", out)
    assert.matches("^tide: span %d+ of run 1 %(run '[^\n]*logs%.lua'%) has no output\n$", err)
    out, err, rc = run(home, "logs 1 999")
    assert.are.equal(2, rc)
    assert.are.equal("", out)
    assert.are.equal(string.format("tide: no span 999 in run 1 in '%s'\n", home), err)
  end)

  it("prints the output of real processes (tide.proc), stdout and stderr", function()
    local _, err, rc = run(home, script("procs.lua", [[
local tide, proc = require("tide"), require("tide.proc")
proc.run{"sh", "-c", "echo out1; echo err1 >&2"}
local t = tide.spawn("sub", function() return proc.run{"echo", "from a task"} end)
t:wait()
pcall(proc.run, {"sh", "-c", "echo failing; exit 3", check = true})
t = nil
collectgarbage()
]]))
    assert.are.equal(0, rc, err)
    local out
    out, err, rc = run(home, "logs 1")
    assert.are.equal(0, rc, err)
    local l = lines(out)
    local head = "^==> span %d+: proc sh %-c 'echo out1; echo err1 >&2' %(ok%) <==$"
    assert.is_truthy(l[1]:match(head), out)
    assert.are.same({ "out1", "err1" }, { l[2], l[3] })
    assert.is_truthy(l[4]:match("^==> span %d+: proc echo 'from a task' %(ok%) <==$"), out)
    assert.are.equal("from a task", l[5])
    assert.is_truthy(l[6]:match("^==> span %d+: proc sh .* %(error%) <==$"), out)
    assert.are.equal("failing", l[7])
    assert.are.equal(7, #l)
    out = run(home, "show 1")
    assert.is_truthy(out:find("\n    ✓ proc echo 'from a task'  ", 1))
    assert.is_truthy(out:find("\n  ✗ proc sh %-c 'echo failing; exit 3'  [%d.]+s  error\n"))
  end)

  it("follows the logs of a running run until it ends", function()
    local path = script("slow.lua", [[
local tide = require("tide")
local runtime = require("tide._runtime")
local store = require("tide._store")
tide.spawn("slow", function()
  runtime.flush()
  local id
  for _, s in ipairs(store.spans(runtime.run_id())) do
    if s.name == "slow" then id = s.id end
  end
  local f = assert(io.open(assert(store.log_path(runtime.run_id(), id)), "w"))
  runtime.flush()
  for i = 1, 8 do
    f:write("line ", i, "\n")
    f:flush()
    tide.sleep(0.1)
  end
  f:close()
end):wait()
collectgarbage()
]])
    os.execute(string.format("%s --home '%s' '%s' >/dev/null 2>&1 &", TIDE, home, path))
    local started
    for _ = 1, 100 do
      local out = run(home, "--json runs")
      if out:find('"status":"running"', 1, true) then
        started = true
        break
      end
      tide.sleep(0.02)
    end
    assert.is_true(started)
    local out, err, rc = run(home, "logs 1 -f", "timeout 20")
    assert.are.equal(0, rc, err)
    local want = "==> span %d+: task slow %(%a+%) <==\n"
    for i = 1, 8 do
      want = want .. "line " .. i .. "\n"
    end
    assert.is_truthy(out:match("^" .. want .. "$"), out)
    local doc = json.decode((run(home, "--json runs")))
    assert.are.equal("succeeded", doc[1].status)
  end)

  -- Whether pid is a live process (a zombie waiting for its reaper is not).
  local function alive(pid)
    local stat = read("/proc/" .. pid .. "/stat")
    return stat ~= nil and not stat:match("^%d+ %b() Z")
  end

  -- Starts `tide home script` whose process (held in a global) writes its pid to a file; returns
  -- the tide process and that pid once it is there.
  local function start_holding(name, text)
    local pidfile = helper.tmpdir() .. "/pid"
    local path = script(name, (text:gsub("PIDFILE", pidfile)))
    local p = require("tide.proc").spawn({ TIDE, "--home", home, "--plain", path })
    local pid
    for _ = 1, 500 do
      pid = (read(pidfile) or ""):match("^(%d+)\n")
      if pid then
        return p, pid
      end
      tide.sleep(0.01)
    end
    error("the script never started its process")
  end

  it("ends on SIGTERM the processes no task waits for, as cancelled", function()
    -- The main chunk is over; only a process held in a global keeps the loop alive.
    local p, pid = start_holding("held.lua", [[
local proc = require("tide.proc")
HELD = proc.spawn({ "sh", "-c", "echo $$ > PIDFILE; exec sleep 60" })
]])
    local t0 = tide.monotime()
    p:kill("TERM")
    local r = p:wait(20)
    assert.truthy(r, "tide did not end on SIGTERM")
    assert.is_true(tide.monotime() - t0 < 10)
    assert.are.equal(130, r.code)
    assert.is_false(alive(pid), "the child outlived tide")
  end)

  it("kills what is left on a second signal and on os.exit: no child outlives tide", function()
    -- The child ignores SIGTERM, so the first signal leaves it to its grace period.
    local p, pid = start_holding("stubborn.lua", [[
local proc = require("tide.proc")
HELD = proc.spawn({ "sh", "-c", "trap '' TERM; echo $$ > PIDFILE; exec sleep 60", grace = 30 })
]])
    p:kill("TERM")
    tide.sleep(0.2)
    assert.is_true(alive(pid), "the child went on the first TERM")
    p:kill("TERM")
    local r = p:wait(10)
    assert.truthy(r, "tide did not exit on the second signal")
    assert.are.equal(143, r.code)
    tide.sleep(0.1) -- the kill is sent as tide exits
    assert.is_false(alive(pid), "the child outlived tide")

    p, pid = start_holding("exits.lua", [[
local proc = require("tide.proc")
HELD = proc.spawn({ "sh", "-c", "echo $$ > PIDFILE; exec sleep 60" })
local function pid_written()
  local f = io.open("PIDFILE")
  local n = f and f:read("n")
  if f then
    f:close()
  end
  return n
end
while not pid_written() do
  require("tide").sleep(0.01)
end
os.exit(3)
]])
    r = p:wait(10)
    assert.truthy(r, "tide did not exit")
    assert.are.equal(3, r.code)
    tide.sleep(0.1)
    assert.is_false(alive(pid), "the child outlived os.exit")
  end)

  it("shows a SIGKILLed run as interrupted and records it so on the next start", function()
    local path = script("long.lua", [[
local tide = require("tide")
tide.spawn("sleeper", function() tide.sleep(60) end):wait()
]])
    local pid = helper.sh(string.format("%s --home '%s' '%s' >/dev/null 2>&1 & echo $!", TIDE, home,
      path)):match("%d+")
    local seen
    for _ = 1, 100 do
      local out = run(home, "--json runs")
      if out:find('"alive":true', 1, true) then
        seen = json.decode(out)[1]
        break
      end
      tide.sleep(0.02)
    end
    assert.is_not_nil(seen, "the run never showed up as running")
    assert.are.equal("running", seen.status)
    -- Wait for the flush timer to write the task spans, then kill.
    local flushed
    for _ = 1, 100 do
      if run(home, "--json show 1"):find('"name":"sleeper"', 1, true) then
        flushed = true
        break
      end
      tide.sleep(0.02)
    end
    assert.is_true(flushed)
    os.execute("kill -9 " .. pid)
    tide.sleep(0.1)

    -- Read-only commands see that its tide is gone.
    local out = run(home, "runs")
    assert.is_truthy(lines(out)[2]:match("^%s*1%s+interrupted%s"), out)
    local doc = json.decode((run(home, "--json show 1")))
    assert.are.equal("interrupted", doc.run.status)
    assert.is_false(doc.run.alive) -- inferred: the database still says running
    assert.is_nil(doc.run.ended)

    -- The next tide to start records it.
    local _, err, rc = run(home, script("ok.lua", "print('next')\n"))
    assert.are.equal(0, rc, err)
    doc = json.decode((run(home, "--json show 1")))
    assert.are.equal("interrupted", doc.run.status)
    assert.is_nil(doc.run.alive) -- now from the database, not inferred
    assert.is_number(doc.run.ended)
    assert.is_true(#doc.spans >= 2)
    for _, s in ipairs(doc.spans) do
      assert.are.equal("interrupted", s.status, s.name)
      assert.is_number(s["end"])
    end
    out = run(home, "show 1")
    assert.is_truthy(out:find("\n  ! task sleeper  %d+%.%d%ds  interrupted\n"), out)
    doc = json.decode((run(home, "--json runs")))
    assert.are.equal("succeeded", doc[1].status)
    assert.are.equal("interrupted", doc[2].status)
  end)

  it("reports a corrupt state.db in one line, exit 2, and leaves it untouched", function()
    os.execute("mkdir -p '" .. home .. "'")
    local junk = ("this is not sqlite. "):rep(300)
    write(home .. "/state.db", junk)
    local want = string.format("tide: state database '%s/state.db' is corrupt: file is not a "
      .. "database\n", home)
    for _, args in ipairs({ "runs", "show 1", "logs 1", script("x.lua", "print(1)\n") }) do
      local out, err, rc = run(home, args)
      assert.are.equal(2, rc, args)
      assert.are.equal("", out, args)
      assert.are.equal(want, err, args)
      assert.are.equal(junk, read(home .. "/state.db"))
    end
    assert.is_nil(read(home .. "/state.db-wal"))
  end)

  it("refuses a --home that is a file, exit 2", function()
    write(dir .. "/afile", "x")
    for _, args in ipairs({ "runs", "show 1", script("y.lua", "print(1)\n") }) do
      local out, err, rc = run(dir .. "/afile", args)
      assert.are.equal(2, rc, args)
      assert.are.equal("", out)
      assert.are.equal(string.format("tide: '%s/afile' is not a directory\n", dir), err)
    end
    assert.are.equal("x", read(dir .. "/afile"))
  end)

  it("lists nothing in a fresh home and does not create it", function()
    local out, err, rc = run(home, "runs")
    assert.are.equal(0, rc, err)
    assert.are.equal(string.format("no runs in '%s'\n", home), out)
    out = run(home, "runs --json")
    assert.are.equal("[]\n", out)
    local _
    _, err, rc = run(home, "show 1")
    assert.are.equal(2, rc)
    assert.are.equal(string.format("tide: no run 1 in '%s'\n", home), err)
    assert.is_nil(read(home .. "/state.db"))
    assert.are_not.equal(0, select(2, helper.sh("test -e '" .. home .. "'")))
  end)

  it("rejects bad input with exit 2 and one line", function()
    local _, err, rc = run(home, script("z.lua", "print(1)\n"))
    assert.are.equal(0, rc, err)
    local cases = {
      { "show 42", "tide: no run 42 in '" .. home .. "'" },
      { "logs 42", "tide: no run 42 in '" .. home .. "'" },
      { "show abc", "tide: show: RUN must be a positive integer, not 'abc' (see 'tide help')" },
      { "show 0", "tide: show: RUN must be a positive integer, not '0' (see 'tide help')" },
      { "show", "tide: show: missing RUN (see 'tide help')" },
      { "show 1 2", "tide: show: unexpected argument '2' (see 'tide help')" },
      { "logs x", "tide: logs: RUN must be a run number or a build id, not 'x' (see 'tide help')" },
      { "logs 1 y", "tide: logs: SPAN must be a positive integer, not 'y' (see 'tide help')" },
      { "logs 1 -f --json", "tide: logs: -f and --json do not go together (see 'tide help')" },
      { "logs 1 --bogus", "tide: logs: unknown option '--bogus' (see 'tide help')" },
      { "runs --limit", "tide: runs: --limit needs a value (see 'tide help')" },
      { "runs --limit=-3",
        "tide: runs: --limit must be a positive integer, not '-3' (see 'tide help')" },
      { "runs -x", "tide: runs: unknown option '-x' (see 'tide help')" },
      { "runs extra", "tide: runs: unexpected argument 'extra' (see 'tide help')" },
    }
    for _, c in ipairs(cases) do
      local out
      out, err, rc = run(home, c[1])
      assert.are.equal(2, rc, c[1])
      assert.are.equal("", out, c[1])
      assert.are.equal(c[2] .. "\n", err, c[1])
    end
  end)

  it("limits runs", function()
    for i = 1, 3 do
      local _, err, rc = run(home, script("r" .. i .. ".lua", "print(1)\n"))
      assert.are.equal(0, rc, err)
    end
    local doc = json.decode((run(home, "--json runs --limit 2")))
    assert.are.equal(2, #doc)
    assert.are.equal(3, doc[1].id)
    assert.are.equal(2, doc[2].id)
    assert.are.equal(4, #lines((run(home, "runs"))))
  end)

  it("draws the live view as plain lines on a pipe, and summarises the run", function()
    local path = script("view.lua", [[
local tide = require("tide")
tide.spawn("good", function() tide.sleep(0.01) end):wait()
pcall(function() tide.spawn("broken", function() error("no") end):wait() end)
collectgarbage()
]])
    local _, err, rc = run(home, "--plain '" .. path .. "'", "env -u TIDE_VIEW")
    assert.are.equal(0, rc, err)
    local l = lines(err)
    assert.is_truthy(l[1]:match("^%[%+%d+%.%d%ds%] ok    task  good  %(%d+%.%d%ds%)$"), l[1])
    assert.is_truthy(l[2]:match("^%[%+%d+%.%d%ds%] ERROR task  broken  %(%d+%.%d%ds%)$"), l[2])
    assert.is_truthy(l[3]:match("^run 1 succeeded in %d+%.%d%ds: 1 ok, 1 error$"), l[3])
    assert.are.equal(3, #l)
    -- TIDE_VIEW=none silences it; tty forces the terminal drawing even on a pipe.
    _, err = run(home, "'" .. path .. "'", "TIDE_VIEW=none")
    assert.are.equal("", err)
    _, err = run(home, "'" .. path .. "'", "TIDE_VIEW=tty")
    assert.is_truthy(err:find("✓", 1, true))
    assert.is_truthy(err:find("✗", 1, true))
    assert.is_truthy(err:find("\nrun 3 ", 1, true) or err:find("run 3 ", 1, true))
  end)

  it("writes print output above the live block on a terminal", function()
    if select(2, helper.sh("command -v script >/dev/null")) ~= 0 then
      pending("needs script(1) for a pseudo-terminal")
      return
    end
    local path = script("tty.lua", [[
local tide = require("tide")
tide.spawn("busy", function()
  tide.sleep(0.25)
  print("hello", "from print")
  tide.sleep(0.15)
end):wait()
collectgarbage()
]])
    local cmd = string.format("%s --home '%s' '%s'", TIDE, home, path)
    local out, rc = helper.sh("TERM=xterm TIDE_VIEW= script -qec \"" .. cmd .. "\" /dev/null")
    assert.are.equal(0, rc, out)
    -- The block (busy, one line) is erased, the line written, the block drawn again.
    assert.is_truthy(out:find("\r\27[1A\27[Jhello\tfrom print\r\n", 1, true), out)
    assert.is_truthy(out:find("busy", 1, true))
    assert.is_truthy(out:find("run 1 \27[32msucceeded", 1, true))
  end)
end)
