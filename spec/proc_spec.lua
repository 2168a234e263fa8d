-- tide.proc seen from Lua: exit codes and signals, environment and cwd, stdin, capture caps and
-- the run's log, line streaming, timeouts and cancellation of whole process groups, descriptor
-- hygiene, <close>, strict options and start failures.
local tide = require("tide")
local proc = require("tide.proc")
local helper = require("helper")

local function read_file(path)
  return assert(helper.read(path))
end

local function alive(pid)
  return proc.run({ "kill", "-0", tostring(pid) }).code == 0
end

-- Killed descendants are reparented and reaped by init a moment later.
local function gone_soon(pid)
  for _ = 1, 100 do
    if not alive(pid) then
      return true
    end
    tide.sleep(0.02)
  end
  return false
end

local raises = helper.raises

describe("proc.run", function()
  it("returns exit codes as data", function()
    local r = proc.run({ "sh", "-c", "echo out; echo err >&2; exit 7" })
    assert.are.equal(7, r.code)
    assert.is_false(r.ok)
    assert.is_nil(r.signal)
    assert.is_false(r.timed_out)
    assert.are.equal("out\n", r.stdout)
    assert.are.equal("err\n", r.stderr)
    assert.are.equal(4, r.stdout_bytes)
    assert.is_true(r.pid > 0)
    assert.is_true(r.wall >= 0)
    assert.is_number(r.cpu_user)
    assert.is_number(r.cpu_sys)
    assert.is_true(r.max_rss > 0)
    local ok = proc.run({ "true" })
    assert.is_true(ok.ok)
    assert.are.equal(0, ok.code)
  end)

  it("reports the signal that ended a process", function()
    local r = proc.run({ "sh", "-c", "kill -KILL $$" })
    assert.are.equal("KILL", r.signal)
    assert.are.equal(137, r.code)
    assert.is_false(r.ok)
    -- SIGPIPE is back to its default in children although tide ignores it.
    assert.are.equal("PIPE", proc.run({ "sh", "-c", "kill -PIPE $$" }).signal)
  end)

  it("runs shell strings with their own positional arguments", function()
    assert.are.equal("a b|c\n", proc.run({ "echo \"$1|$2\"", "a b", "c", shell = true }).stdout)
    assert.are.equal("x y\n", proc.sh("echo x y").stdout)
    assert.are.equal(3, proc.sh("exit 3").code)
    assert.are.equal("/tmp\n", proc.sh("pwd", { cwd = "/tmp" }).stdout)
  end)

  it("inherits, adds to or replaces the environment", function()
    local home = os.getenv("HOME")
    assert.are.equal(home .. "\n", proc.sh("echo $HOME").stdout)
    local r = proc.sh("echo \"$HOME|$TIDE_X|${TIDE_N}\"", { env = { TIDE_X = "x y", TIDE_N = 5 } })
    assert.are.equal(home .. "|x y|5\n", r.stdout)
    r = proc.sh("echo \"${HOME-unset}\"", { env = { HOME = false } })
    assert.are.equal("unset\n", r.stdout)
    r = proc.run({ "/usr/bin/env", env = { ONLY = "1" }, env_mode = "replace" })
    assert.are.equal("ONLY=1\n", r.stdout)
    local err = raises("EINPUT", proc.run, { "true", env_mode = "inherit", env = {} })
    assert.matches("env_mode", err.message)
  end)

  it("runs in cwd and names a missing one", function()
    local dir = helper.tmpdir()
    assert.are.equal(dir .. "\n", proc.run({ "pwd", cwd = dir }).stdout)
    local err = raises("ENOENT", proc.run, { "true", cwd = dir .. "/missing" })
    assert.are.equal("proc.run: cannot change to directory '" .. dir
      .. "/missing': No such file or directory", err.message)
  end)

  it("feeds stdin from a string, a file or nothing", function()
    local big = string.rep("0123456789abcdef", 200000) -- 3.2 MB: larger than any pipe buffer
    local r = proc.run({ "cat", stdin = big, max_output = #big })
    assert.are.equal(#big, #r.stdout)
    assert.is_true(r.stdout == big)
    local dir = helper.tmpdir()
    local f = assert(io.open(dir .. "/in.txt", "w"))
    f:write("line 1\nline 2\n")
    f:close()
    assert.are.equal("2\n", proc.run({ "wc", "-l", stdin = { file = dir .. "/in.txt" } }).stdout)
    assert.are.equal("", proc.run({ "cat", stdin = false }).stdout)
    assert.are.equal("", proc.run({ "cat" }).stdout)
    raises("ENOENT", proc.run, { "cat", stdin = { file = dir .. "/nope" } })
    raises("EINPUT", proc.run, { "cat", stdin = { path = "x" } })
  end)

  it("caps the capture, marks it, and keeps everything in the run's log", function()
    local r = proc.sh("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo tail >&2",
      { max_output = 1000 })
    assert.is_true(r.stdout_truncated)
    assert.is_false(r.stderr_truncated)
    assert.are.equal(3000001, r.stdout_bytes)
    assert.are.equal(string.rep("x", 1000), r.stdout:sub(1, 1000))
    assert.matches("[tide: output truncated: kept 1000 of 3000001 bytes", r.stdout, 1001, true)
    assert.is_string(r.log, "the run is recorded, so the output has a log file")
    assert.matches("/logs/%d+/%d+%.log$", r.log)
    local log = read_file(r.log)
    assert.are.equal(3000001 + 5, #log)
    assert.are.equal(string.rep("x", 3000000) .. "\n", log:gsub("tail\n", ""))
    assert.matches("full output in " .. r.log, r.stdout, 1, true)
    -- Nothing captured with max_output = 0; a silent process leaves no log.
    r = proc.sh("echo hi", { max_output = 0 })
    assert.are.equal(3, r.stdout_bytes)
    assert.is_true(r.stdout_truncated)
    assert.are.equal("hi\n", read_file(r.log))
    assert.is_nil(proc.run({ "true" }).log)
    assert.is_nil(proc.sh("echo hi", { log = false }).log)
  end)

  it("streams lines to handlers in the task, with the partial last line", function()
    local seen, outs, errs = {}, {}, {}
    local r = proc.sh("printf 'a\\n\\nb\\n'; echo e >&2; printf 'last'", {
      on_line = function(line, stream)
        seen[#seen + 1] = stream .. ":" .. line
      end,
      on_stdout = function(line)
        outs[#outs + 1] = line
      end,
      on_stderr = function(line)
        errs[#errs + 1] = line
        tide.sleep(0) -- handlers may block: they run in the task
      end,
    })
    assert.are.equal(0, r.code)
    assert.are.same({ "a", "", "b", "last" }, outs)
    assert.are.same({ "e" }, errs)
    assert.are.equal(5, #seen)
    assert.are.equal("a\n\nb\nlast", r.stdout) -- the capture is still there
  end)

  it("streams many lines without losing any", function()
    local n, sum = 0, 0
    proc.run({ "seq", "1", "200000", on_stdout = function(line)
      n = n + 1
      sum = sum + tonumber(line)
    end, max_output = 0 })
    assert.are.equal(200000, n)
    assert.are.equal(200000 * 200001 // 2, sum)
  end)

  describe("with stdout_batch", function()
    it("never lets a stderr line overtake stdout written before it", function()
      local seen = {}
      -- Each stderr line follows a stdout line written inside a batch interval, not read yet.
      local script = "for i in 1 2 3; do echo out$i; sleep 0.1; echo out$i.b; echo err$i >&2; done"
      local r = proc.sh(script, {
        stdout_batch = 0.5,
        on_line = function(line, stream)
          seen[#seen + 1] = stream .. ":" .. line
        end,
      })
      assert.are.equal(0, r.code)
      assert.are.equal(9, #seen)
      local at = {}
      for i, l in ipairs(seen) do
        at[l] = i
      end
      -- Two pipes keep no order between them, except this one: stdout can still come before
      -- stderr written earlier, never the other way round.
      for i = 1, 3 do
        assert.is_true(at["stdout:out" .. i .. ".b"] < at["stderr:err" .. i],
          table.concat(seen, " "))
      end
    end)

    it("still delivers stdout while the process runs, a batch at a time", function()
      local got_at
      local t0 = tide.monotime()
      local r = proc.sh("echo early; sleep 1; echo late", {
        stdout_batch = 0.05,
        on_stdout = function(line)
          if line == "early" then
            got_at = tide.monotime() - t0
          end
        end,
      })
      assert.are.equal(0, r.code)
      assert.is_true(got_at ~= nil and got_at < 0.9, "early came at " .. tostring(got_at))
      assert.are.equal("early\nlate\n", r.stdout)
    end)

    it("reads a flowing stream at once and loses nothing of it", function()
      local n, sum = 0, 0
      local r = proc.run({ "seq", "1", "200000", stdout_batch = 1, max_output = 0,
        on_stdout = function(line)
          n = n + 1
          sum = sum + tonumber(line)
        end })
      assert.are.equal(0, r.code)
      assert.are.equal(200000, n)
      assert.are.equal(200000 * 200001 // 2, sum)
    end)

    it("waits for EOF at once after the exit, not for the interval", function()
      local t0 = tide.monotime()
      local r = proc.sh("echo a; echo b", { stdout_batch = 1 })
      assert.are.equal("a\nb\n", r.stdout)
      assert.is_true(tide.monotime() - t0 < 0.9)
    end)

    it("is a number of seconds up to 1", function()
      assert.has_error(function()
        proc.run({ "true", stdout_batch = 2 })
      end)
      assert.has_error(function()
        proc.run({ "true", stdout_batch = "fast" })
      end)
    end)
  end)

  it("kills the whole group on timeout and reports 124", function()
    local grandchild
    local r = proc.sh("sleep 30 & echo $!; sleep 30", {
      timeout = 0.3,
      on_stdout = function(line)
        grandchild = tonumber(line)
      end,
    })
    assert.is_true(r.timed_out)
    assert.are.equal(124, r.code)
    assert.are.equal("TERM", r.signal)
    assert.is_false(r.ok)
    assert.is_number(grandchild)
    assert.is_true(gone_soon(grandchild), "the background grandchild survived the timeout")
    assert.is_true(gone_soon(r.pid))
  end)

  it("uses SIGKILL after the grace period when TERM is ignored", function()
    local r = proc.sh("trap '' TERM; sleep 30", { timeout = 0.1, grace = 0.2 })
    assert.is_true(r.timed_out)
    assert.are.equal(124, r.code)
    assert.are.equal("KILL", r.signal)
  end)

  it("kills the whole group when the task is cancelled", function()
    local started = {}
    local t = tide.spawn(function()
      return proc.sh("sleep 30 & echo $! $$; sleep 30", {
        on_stdout = function(line)
          for pid in line:gmatch("%d+") do
            started[#started + 1] = tonumber(pid)
          end
        end,
      })
    end)
    while #started < 2 do
      tide.sleep(0.01)
    end
    t:cancel()
    local err = raises("ECANCELED", t.wait, t)
    assert.are.equal("task cancelled", err.message)
    assert.are.equal("cancelled", t:status())
    for _, pid in ipairs(started) do
      assert.is_true(gone_soon(pid), "process " .. pid .. " survived the cancel")
    end
  end)

  it("runs 200 processes in parallel", function()
    local tasks = {}
    for i = 1, 200 do
      tasks[i] = tide.spawn(function()
        return proc.run({ "sleep", "1" }).code
      end)
    end
    local codes = tide.all(tasks)
    assert.are.equal(200, #codes)
    for i = 1, 200 do
      assert.are.equal(0, codes[i])
    end
  end)

  it("leaks no descriptor into children", function()
    local dir = helper.tmpdir()
    local f = assert(io.open(dir .. "/held", "w")) -- stdio opens without O_CLOEXEC
    local r = proc.run({ "ls", "/proc/self/fd" })
    f:close()
    assert.are.equal("0\n1\n2\n3\n", r.stdout) -- 3 is ls's own directory stream
  end)

  it("raises ENOENT naming a program that cannot start", function()
    local err = raises("ENOENT", proc.run, { "tide-no-such-program", "x" })
    assert.are.equal("proc.run: cannot execute 'tide-no-such-program': not found in PATH",
      err.message)
    err = raises("ENOENT", proc.run, { "/no/such/prog" })
    assert.matches("'/no/such/prog'", err.message)
    raises("EACCES", proc.run, { "/" })
  end)

  it("rejects unknown options and bad types", function()
    local err = raises("EINPUT", proc.run, { "true", cwdir = "/tmp" })
    assert.are.equal("proc.run: unexpected key 'cwdir'", err.message)
    err = raises("EINPUT", proc.run, { "true", timeout = "5" })
    assert.are.equal("proc.run: option 'timeout' must be a number, got string", err.message)
    err = raises("EINPUT", proc.run, { "true", timeout = -1 })
    assert.matches("timeout", err.message)
    raises("EINPUT", proc.run, { "true", max_output = 1.5 })
    raises("EINPUT", proc.run, { "true", on_line = "print" })
    raises("EINPUT", proc.run, { "true", env = { ["A=B"] = "x" } })
    raises("EINPUT", proc.run, { "true", env = { A = {} } })
    raises("EINPUT", proc.run, { true })
    raises("EINPUT", proc.run, {})
    raises("EINPUT", proc.run, "true")
    raises("EINPUT", proc.spawn, { "true", [5] = "x" })
    err = raises("EINPUT", proc.sh, "true", { bogus = 1 })
    assert.are.equal("proc.sh: unexpected key 'bogus'", err.message)
  end)

  it("raises on failure with check = true", function()
    local err = raises("EPROC", proc.run, { "exit 2", shell = true, check = true })
    assert.are.equal("'exit 2' exited with 2", err.message)
    assert.are.equal(2, err.result.code)
    err = raises("EPROC", proc.run, { "sh", "-c", "kill $$", check = true })
    assert.are.equal("'sh -c 'kill $$'' was killed by signal TERM", err.message)
    err = raises("ETIMEDOUT", proc.sh, "sleep 5", { check = true, timeout = 0.1 })
    assert.are.equal("'sleep 5' timed out after 0.1 s", err.message)
    assert.is_true(err.result.timed_out)
    assert.are.equal(0, proc.run({ "true", check = true }).code)
  end)
end)

describe("proc.spawn", function()
  it("returns a handle to wait for, with wait timeouts", function()
    local p = proc.spawn({ "sleep", "5" })
    assert.is_true(p:pid() > 0)
    local r, msg, code = p:wait(0.05)
    assert.is_nil(r)
    assert.are.equal("proc.wait: timeout", msg)
    assert.are.equal("ETIMEDOUT", code)
    assert.is_true(p:kill("INT"))
    r = p:wait()
    assert.are.equal("INT", r.signal)
    assert.is_nil(select(1, p:kill()))
    assert.are.equal("ESRCH", select(3, p:kill()))
    p:close()
    assert.has_error(function()
      p:wait()
    end, "attempt to use a closed process")
  end)

  it("writes to stdin through a pipe", function()
    local p = proc.spawn({ "sort", stdin = true })
    assert.is_true(p:write("b\n"))
    assert.is_true(p:write("a\n"))
    p:close_stdin()
    local ok, _, code = p:write("c\n")
    assert.is_nil(ok)
    assert.are.equal("EPIPE", code)
    assert.are.equal("a\nb\n", p:wait().stdout)
    local q = proc.spawn({ "true" })
    assert.has_error(function()
      q:write("x")
    end)
    q:wait()
  end)

  it("kills a still-running child when a <close> variable goes out of scope", function()
    local pid
    do
      local p <close> = proc.spawn({ "sleep", "30" })
      pid = p:pid()
      assert.is_true(alive(pid))
    end
    assert.is_true(gone_soon(pid))
  end)

  it("streams lines through wait in the waiting task", function()
    local lines = {}
    local p = proc.spawn({ "printf 'x\\ny'", shell = true, on_line = function(l)
      lines[#lines + 1] = l
    end })
    assert.are.equal(0, p:wait().code)
    assert.are.same({ "x", "y" }, lines)
  end)

  it("terminates the process when a line handler fails or its task is cancelled", function()
    local p
    local t = tide.spawn(function()
      p = proc.spawn({ "seq", "1", "1000000", max_output = 0, on_stdout = function(line)
        if line == "1" then
          tide.sleep(30) -- meanwhile the line queue fills up and reading pauses
        end
      end })
      return p:wait()
    end)
    tide.sleep(0.3)
    local pid = p:pid()
    assert.is_true(alive(pid))
    t:cancel()
    raises("ECANCELED", t.wait, t)
    assert.is_true(gone_soon(pid))
    assert.has_error(function()
      p:wait()
    end, "attempt to use a closed process")

    local q = proc.spawn({ "sh", "-c", "echo x; sleep 30", on_stdout = function()
      error("handler failed")
    end })
    local qpid = q:pid()
    local ok, err = pcall(q.wait, q)
    assert.is_false(ok)
    assert.matches("handler failed", err)
    assert.is_true(gone_soon(qpid))
  end)

  it("lets one task wait and raises for a second waiter", function()
    local p = proc.spawn({ "sleep", "0.3" })
    local t = tide.spawn(function()
      return p:wait().code
    end)
    tide.sleep(0.05)
    assert.has_error(function()
      p:wait()
    end, "proc.wait: another task is already waiting for this process")
    assert.are.equal(0, t:wait())
  end)

  it("reads what the pipes hold without waiting for the loop (read_pending)", function()
    local native = require("tide._proc")
    local p = assert(native.spawn({ "sh", "-c", "echo err >&2; echo out; sleep 5", lines = true }))
    -- No yield here, so the loop reads nothing: the lines are in the pipes until read_pending.
    local t0 = os.clock()
    while os.clock() - t0 < 0.2 do
    end
    assert.is_true(p:read_pending())
    local r, _, got = p:wait()
    assert.equal("lines", r)
    table.sort(got)
    assert.same({ "err", "out" }, got)
    p:close()
    -- control: nothing pending, nothing queued
    local q = assert(native.spawn({ "sleep", "5", lines = true }))
    assert.is_false(q:read_pending())
    q:close()
  end)

  it("cannot block outside a task", function()
    local p = proc.spawn({ "sleep", "0.1" })
    local co = coroutine.wrap(function()
      return p:wait()
    end)
    local ok, err = pcall(co)
    assert.is_false(ok)
    assert.matches("blocking call outside a task", err)
    p:wait()
  end)
end)
