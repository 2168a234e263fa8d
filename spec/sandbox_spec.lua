-- The process sandbox (proc.run{..., sandbox = ...}) against the adversarial list of the design:
-- every probe runs once sandboxed and once as a control (unsandboxed, or with that layer off),
-- so each test shows that the protection is what stops the probe. The probes are one small C
-- program (spec/fixtures/sandbox/probe.c) built here with cc.
local tide = require("tide")
local proc = require("tide.proc")
local helper = require("helper")

local raises = helper.raises
local ROOT = helper.sh("id -u") == "0\n"
-- The uid that owns what a sandbox writes, as seen from the host.
local OUTER = ROOT and 100000 or tonumber((helper.sh("id -u")))

local function sh(cmd)
  local out, rc = helper.sh(cmd)
  assert(rc == 0, cmd .. " failed: " .. out)
  return out
end

-- Scratch directories live in /var/tmp, not TMPDIR: a sandbox mounts a fresh /tmp, so a probe
-- or a cwd under the host's /tmp (where a checkout's build directory may well be) is not there.
local scratches = {}
local function scratch()
  local dir = helper.sh("mktemp -d /var/tmp/tide-sandbox-spec.XXXXXX"):gsub("\n$", "")
  assert(dir ~= "", "cannot make a directory in /var/tmp")
  scratches[#scratches + 1] = dir
  return dir
end

-- /var/tmp outlives the test's own TMPDIR: remove what this file made there.
teardown(function()
  require("tide.uv").chdir("/")
  for _, dir in ipairs(scratches) do
    helper.sh("chmod -R u+rwX '" .. dir .. "' 2>/dev/null; rm -rf '" .. dir .. "' '" .. dir
      .. "-link'")
  end
end)

-- A directory the sandbox user may write (as root the sandbox runs as OUTER, not root).
local function workdir()
  local dir = scratch()
  sh("chmod 755 " .. dir)
  if ROOT then
    sh("chown " .. OUTER .. ":" .. OUTER .. " " .. dir)
  end
  return dir
end

-- The sandbox user must reach the tree: TMPDIR's parents must be searchable by everyone.
local base = scratch()
sh("chmod 755 " .. base)
-- The sandboxed programs below inherit this process's cwd unless given one.
require("tide.uv").chdir(base)
local PROBE = base .. "/probe"
sh("cc -O1 -o " .. PROBE .. " " .. (os.getenv("TIDE_SOURCE_DIR") or ".")
  .. "/spec/fixtures/sandbox/probe.c")

local function usable()
  local ok, r = pcall(proc.run, { "/bin/true", sandbox = { writable = {} } })
  return ok and r.code == 0, ok and r or r
end
local SANDBOX_OK, why = usable()
if not SANDBOX_OK then
  -- A machine without user namespaces may skip these, but only when told to: a silent skip
  -- would pass a suite that tested nothing.
  if os.getenv("TIDE_SPEC_NO_SANDBOX") then
    describe("sandbox", function()
      pending("TIDE_SPEC_NO_SANDBOX: " .. tostring(why))
    end)
    return
  end
  error("this machine cannot create the sandbox (set TIDE_SPEC_NO_SANDBOX=1 to skip): "
    .. tostring(type(why) == "table" and (why.message or why.stderr) or why))
end

-- The pid of this tide process, a host process the sandbox must not reach.
local function tide_pid()
  return tonumber(helper.read("/proc/self/stat"):match("^(%d+)"))
end

-- Runs the probe; returns its first line of output and the result.
-- (No survivors: "[s]leep" keeps pgrep from matching the shell that runs it.)
local function survivors(tag)
  local out = helper.sh("pgrep -f '[s]leep .*" .. tag .. "'")
  return out
end

local function probe(sandbox, ...)
  local cmd = { PROBE, ... }
  cmd.sandbox, cmd.cwd = sandbox, base
  local r = proc.run(cmd)
  return (r.stdout:match("^([^\n]*)")), r
end

-- Runs a Lua script in a new tide with env added; returns its result.
local function in_tide(env, source)
  local script = base .. "/script-" .. tostring(math.random(1e9)) .. ".lua"
  helper.write(script, source)
  return proc.run({ helper.tide, script, cwd = base, env = env })
end

local function sbox(extra)
  local p = { writable = {} }
  for k, v in pairs(extra or {}) do
    p[k] = v
  end
  return p
end

describe("sandbox: filesystem", function()
  it("makes the host read-only and keeps writes inside the writable paths (A5.1, A5.2)", function()
    local work, other = workdir(), workdir()
    local sb = { writable = { work } }
    assert.equal("EROFS", (probe(sb, "write", "/usr/tide-x")))
    assert.equal("EROFS", (probe(sb, "write", "/tide-x")))
    assert.equal("EROFS", (probe(sb, "write", other .. "/f")))
    assert.is_nil(helper.read(other .. "/f"))
    -- control: the same write without the sandbox
    assert.equal("ok", (probe(nil, "write", other .. "/f")))
    assert.equal("ok", (probe(sb, "write", work .. "/f")))
    -- on the host the new file belongs to the mapped outer uid, never to root
    assert.equal(tostring(OUTER), sh("stat -c %u " .. work .. "/f"):gsub("\n", ""))
  end)

  it("as root, idmaps a writable path: tide's files are the program's, its files tide's", function()
    if not ROOT then
      return pending("only when tide runs as root")
    end
    -- owned by root, as a source tree checked out by root is
    local work, other = helper.tmpdir(), scratch() -- other: outside any bind, so not in /tmp
    sh("chmod 755 " .. work .. " " .. other)
    helper.write(work .. "/old", "x\n")
    local sb = { writable = { work } }
    local r = proc.run({ "sh", "-c", "stat -c %u:%g . old; echo new > new && echo y >> old"
      .. " && mkdir d && echo ok", cwd = work, sandbox = sb })
    assert.equal("1000:1000\n1000:1000\nok\n", r.stdout, r.stderr)
    assert.same({}, r.sandbox.missing)
    assert.equal("0:0\n0:0\n", sh("stat -c %u:%g " .. work .. "/new " .. work .. "/d"))
    assert.equal("x\ny\n", helper.read(work .. "/old"))
    -- the program itself is still the unprivileged outer uid
    local p = proc.spawn({ "sleep", "5", cwd = work, sandbox = sb })
    tide.sleep(0.1)
    assert.truthy(helper.read("/proc/" .. p:pid() .. "/status"):find("Uid:%s+" .. OUTER .. "%s"))
    p:kill("KILL")
    p:wait()
    -- a root-owned directory that is not writable-listed stays closed
    assert.equal("EROFS", (probe(sb, "write", other .. "/f")))
    assert.equal("ok", (probe(nil, "write", other .. "/f"))) -- control
    -- only tide's own ids are mapped: another user's directory inside stays closed
    sh("mkdir " .. work .. "/theirs && chown 4242:4242 " .. work .. "/theirs")
    assert.equal("EACCES", (probe(sb, "write", work .. "/theirs/f")))
    -- control: with idmapping switched off, the sandbox uid cannot write root's directory; and a
    -- policy that requires it refuses to run
    local out = in_tide({ TIDE_SANDBOX_ASSUME_MISSING = "idmap" }, ([[
      local proc = require("tide.proc")
      local r = proc.run({ "%s", "write", "%s/g", cwd = "/", sandbox = { writable = { "%s" } } })
      io.write("write=", r.stdout, "missing=", table.concat(r.sandbox.missing, ","), "\n")
      local ok, e = pcall(proc.run, { "/bin/true", cwd = "/",
        sandbox = { writable = { "%s" }, require = { "idmap" } } })
      io.write("required=", tostring(ok), " ", tostring(e.code), " ", e.message, "\n")
    ]]):format(PROBE, work, work, work))
    assert.truthy(out.stdout:find("write=EACCES\nmissing=idmap\n", 1, true), out.stdout)
    assert.truthy(out.stdout:find("required=false ESANDBOX", 1, true), out.stdout)
    assert.truthy(out.stdout:find(work, 1, true), out.stdout)
    assert.truthy(out.stderr:find("running without idmap", 1, true), out.stderr)
    assert.is_nil(helper.read(work .. "/g"))
  end)

  it("keeps /dev/stdout, /dev/stderr and the process's own /proc files writable", function()
    local r = proc.run({ "sh", "-c", "echo out > /dev/stdout; echo err > /dev/stderr;"
      .. " echo 5 > /proc/self/oom_score_adj && cat /proc/self/oom_score_adj", sandbox = sbox() })
    assert.equal("out\n5\n", r.stdout)
    assert.equal("err\n", r.stderr)
  end)

  it("keeps the cwd writable by default (sandbox = true)", function()
    local work = workdir()
    local r = proc.run({ "sh", "-c", "echo hi > out && cat out", sandbox = true, cwd = work })
    assert.equal("hi\n", r.stdout)
    assert.equal("hi\n", helper.read(work .. "/out"))
  end)

  it("never maps the sandbox to root: root-only files stay unreadable (A5.3)", function()
    if not ROOT then
      return pending("only meaningful when tide runs as root")
    end
    assert.equal("EACCES", (probe(sbox(), "read", "/etc/shadow")))
    assert.equal("ok", (probe(nil, "read", "/etc/shadow"))) -- control
    local uid = proc.run({ "id", "-u", sandbox = sbox() }).stdout
    assert.equal("1000\n", uid)
    local r = proc.run({ "id", "-u", sandbox = sbox({ uid = 0 }) })
    assert.equal("0\n", r.stdout) -- uid 0 inside is still OUTER outside
    assert.equal("EACCES", (probe(sbox({ uid = 0 }), "read", "/etc/shadow")))
  end)

  it("hides listed directories (A5.4)", function()
    local d = workdir()
    helper.write(d .. "/secret", "x")
    assert.equal("", proc.run({ "ls", d, sandbox = sbox({ hide = { d } }) }).stdout)
    assert.equal("secret\n", proc.run({ "ls", d, sandbox = sbox() }).stdout) -- control
    -- a writable path inside a hidden one is still there; the rest stays hidden and read-only
    sh("mkdir " .. d .. "/sub && chown " .. OUTER .. " " .. d .. "/sub")
    local r = proc.run({ "sh", "-c", "ls; touch sub/ok && echo wrote; touch x || echo ro",
      cwd = d, sandbox = { hide = { d }, writable = { d .. "/sub" } } })
    assert.equal("sub\nwrote\nro\n", r.stdout)
  end)

  it("binds read_only paths over a writable one", function()
    local work = workdir()
    sh("mkdir " .. work .. "/git && chown " .. OUTER .. " " .. work .. "/git")
    local sb = { writable = { work }, read_only = { work .. "/git" } }
    assert.equal("EROFS", (probe(sb, "write", work .. "/git/x")))
    assert.equal("ok", (probe({ writable = { work } }, "write", work .. "/git/x"))) -- control
  end)

  it("does not follow a workspace symlink out of the writable area (A5.5, A5.7)", function()
    local work, other = workdir(), workdir()
    helper.write(other .. "/target", "keep")
    sh("chown " .. OUTER .. " " .. other .. "/target") -- only the mount may refuse
    sh("ln -s " .. other .. "/target " .. work .. "/link")
    local sb = { writable = { work } }
    assert.equal("EROFS", (probe(sb, "write", work .. "/link")))
    assert.equal("ENOENT", (probe(sb, "read", "/nonexistent-tide/x")))
    -- a hard link from a read-only area into the workspace crosses mounts
    local r = proc.run({ "ln", other .. "/target", work .. "/hard", sandbox = sb })
    assert.is_not.equal(0, r.code)
    assert.truthy(r.stderr:find("cross%-device") or r.stderr:find("Invalid cross"))
    -- control: the same link without the sandbox works
    assert.equal(0, proc.run({ "ln", other .. "/target", work .. "/hard" }).code)
    assert.equal("keep", helper.read(other .. "/target"))
  end)

  it("never binds what a path swapped for a symlink during setup points to (A5.6)", function()
    local work, victim = workdir(), workdir()
    if ROOT then
      sh("chown 0:0 " .. victim) -- idmapped if it were ever bound: a stray write would land
    end
    sh("mkdir " .. work .. "/a && chown " .. OUTER .. " " .. work .. "/a && ln -s " .. victim
      .. " " .. work .. "/l")
    local racer = proc.spawn({ PROBE, "swap", work .. "/a", work .. "/l", "20", cwd = base })
    local ran, refused = 0, 0
    for i = 1, 60 do
      local ok, r = pcall(proc.run, { PROBE, "write", work .. "/a/f" .. i, cwd = "/",
        sandbox = { writable = { work .. "/a" } } })
      if ok then
        ran = ran + 1
      else
        assert.truthy(r.code == "EINPUT" or r.code == "ESANDBOX", tostring(r.message))
        refused = refused + 1
      end
    end
    racer:kill("KILL")
    racer:wait()
    assert.equal(60, ran + refused)
    assert.equal("", sh("ls " .. victim)) -- nothing ever landed behind the symlink
    -- control: without the sandbox, the same writes through the swapped name reach the victim
    local hit = false
    racer = proc.spawn({ PROBE, "swap", work .. "/a", work .. "/l", "20", cwd = base })
    for i = 1, 200 do
      proc.run({ PROBE, "write", work .. "/a/c" .. i, cwd = "/" })
      if sh("ls " .. victim) ~= "" then
        hit = true
        break
      end
    end
    racer:kill("KILL")
    racer:wait()
    assert.is_true(hit)
  end)

  it("gives a fresh, sized /tmp (A5.29)", function()
    local cmd = { "sh", "-c", "head -c 3000000 /dev/zero > /tmp/f" }
    cmd.sandbox = sbox({ tmp_size = "1M" })
    local r = proc.run(cmd)
    assert.is_not.equal(0, r.code)
    assert.truthy(r.stderr:find("No space left"))
    cmd.sandbox = sbox({ tmp_size = "8M" }) -- control
    assert.equal(0, proc.run(cmd).code)
    -- the host's /tmp is not visible
    helper.write("/tmp/tide-sandbox-spec-marker", "x")
    local ls = proc.run({ "ls", "/tmp", sandbox = sbox() }).stdout
    os.remove("/tmp/tide-sandbox-spec-marker")
    assert.equal("", ls)
  end)

  it("limits file size with fsize", function()
    local work = workdir()
    local cmd = { "sh", "-c", "head -c 3000000 /dev/zero > f" }
    cmd.sandbox = { writable = { work }, fsize = "1M" }
    cmd.cwd = work
    assert.is_not.equal(0, proc.run(cmd).code)
    cmd.sandbox = { writable = { work } } -- control
    assert.equal(0, proc.run(cmd).code)
  end)

  it("has a minimal /dev and no mknod (A5.33)", function()
    local r = proc.run({ "ls", "/dev", sandbox = sbox() })
    assert.equal("fd full null ptmx pts random shm stderr stdin stdout tty urandom zero",
      (r.stdout:gsub("\n", " "):gsub(" $", "")))
    local work = workdir()
    assert.equal("EPERM", (probe({ writable = { work } }, "mknod", work .. "/n")))
    -- fifos are not devices: mkfifo keeps working
    assert.equal(0, proc.run({ "mkfifo", work .. "/fifo", sandbox = { writable = { work } } }).code)
    assert.equal(0, proc.run({ "sh", "-c", "echo x > /dev/null", sandbox = sbox() }).code)
  end)

  it("shows only its own processes in /proc, read-only /proc/sys (A5.32)", function()
    local host = proc.spawn({ "sleep", "5" })
    local r = proc.run({ "sh", "-c", "ls /proc | grep '^[0-9]*$' | sort -n | tr '\\n' ' '",
      sandbox = sbox() })
    assert.equal("1 2 ", r.stdout:gsub("%d%d+ ", ""):sub(1, 4))
    assert.falsy((" " .. r.stdout):find(" " .. host:pid() .. " ", 1, true))
    local w = proc.run({ "sh", "-c", "echo 1 > /proc/sys/kernel/hostname", sandbox = sbox() })
    assert.is_not.equal(0, w.code)
    host:kill("KILL")
    host:wait()
  end)

  it("leaves the host's mount table unchanged (A5.34)", function()
    local before = helper.read("/proc/self/mountinfo")
    for _ = 1, 20 do
      proc.run({ "/bin/true", sandbox = sbox() })
    end
    assert.equal(before, helper.read("/proc/self/mountinfo"))
  end)
end)

describe("sandbox: processes and kernel interfaces", function()
  it("cannot see, signal or trace host processes (A5.13, A5.14)", function()
    local host = proc.spawn({ "sleep", "10" })
    local pid = tostring(host:pid())
    assert.equal("ESRCH", (probe(sbox(), "kill", pid)))
    assert.equal("ok", (probe(nil, "kill", pid))) -- control
    assert.equal("EPERM", (probe(sbox(), "ptrace", "1")))
    if ROOT then
      assert.equal("ok", (probe(nil, "ptrace", pid))) -- control: root may trace it outside
    end
    host:kill("KILL")
    host:wait()
  end)

  it("makes no setuid or setgid file", function()
    local work = workdir()
    sh("cp " .. PROBE .. " " .. work .. "/p && chown " .. OUTER .. " " .. work .. "/p")
    local sb = { writable = { work } }
    assert.equal("EPERM", (probe(sb, "chmod", work .. "/p", "4755")))
    assert.equal("EPERM", (probe(sb, "chmod", work .. "/p", "2755")))
    assert.equal("EPERM", (probe(sb, "creat", work .. "/q", "4755")))
    assert.equal("ENOSYS", (probe(sb, "openat2", "/etc/hostname")))
    assert.equal("ok", (probe(sb, "chmod", work .. "/p", "755")))
    assert.equal("ok", (probe(sb, "creat", work .. "/q", "755")))
    assert.equal("755\n", sh("stat -c %a " .. work .. "/p"))
    -- control: unsandboxed, the same calls set the bits
    assert.equal("ok", (probe(nil, "chmod", work .. "/p", "4755")))
    assert.equal("ok", (probe(nil, "openat2", "/etc/hostname")))
    assert.equal("4755\n", sh("stat -c %a " .. work .. "/p"))
  end)

  it("passes only PATH, HOME, LANG, TZ and CI of tide's environment (A5.31)", function()
    local function names(r)
      local list = {}
      for name in r.stdout:gmatch("([%w_]+)=[^\n]*\n") do
        list[#list + 1] = name
      end
      table.sort(list)
      return table.concat(list, ",")
    end
    -- ctest gives this tide TIDE_BIN, TIDE_HOME...: none of them reaches the program
    local r = proc.run({ "env", sandbox = sbox() })
    for name in names(r):gmatch("[^,]+") do
      assert.truthy(({ PATH = 1, HOME = 1, LANG = 1, TZ = 1, CI = 1 })[name], name)
    end
    assert.truthy(r.stdout:find("PATH=" .. os.getenv("PATH"), 1, true))
    assert.truthy(r.stdout:find("\nLANG=") or r.stdout:find("^LANG="))
    -- env still adds, and env_mode = "replace" is exact
    r = proc.run({ "env", sandbox = sbox(), env = { EXTRA = "1", TIDE_BIN = "given" } })
    assert.truthy(r.stdout:find("EXTRA=1\n", 1, true) and r.stdout:find("TIDE_BIN=given", 1, true))
    r = proc.run({ "/usr/bin/env", sandbox = sbox(), env = { ONLY = "1" }, env_mode = "replace" })
    assert.equal("ONLY=1\n", r.stdout)
    -- control: without the sandbox the whole environment is inherited
    r = proc.run({ "env" })
    assert.truthy(r.stdout:find("TIDE_BIN=", 1, true), r.stdout)
  end)

  it("blocks TIOCSTI, also with high bits set (A5.15)", function()
    assert.equal("EPERM", (probe(sbox(), "tiocsti")))
    assert.equal("EPERM", (probe(sbox(), "tiocsti_high")))
    assert.equal("ENOTTY", (probe(nil, "tiocsti"))) -- control: the filter answers, not the tty
  end)

  it("blocks mount and nested namespaces (A5.17, A5.18)", function()
    assert.equal("EPERM", (probe(sbox(), "mount", "/tmp")))
    assert.equal("EPERM", (probe(sbox(), "unshare_user")))
    assert.equal("EPERM", (probe(sbox(), "clone_newnet")))
    assert.equal("EPERM", (probe(sbox(), "setns")))
    assert.equal("ENOSYS", (probe(sbox(), "clone3")))
    -- controls: without the sandbox (as root: mount in a private namespace)
    assert.equal("ok", (probe(nil, "unshare_user")))
    assert.equal("ok", (probe(nil, "clone3")))
    if ROOT then
      assert.equal("ok", (probe(nil, "clone_newnet")))
      local r = proc.run({ "unshare", "-m", PROBE, "mount", "/tmp", cwd = base })
      assert.equal("ok\n", r.stdout)
    end
    -- regression: fork, threads and background jobs still work
    local r = proc.run({ "sh", "-c", "(echo a) & (echo b) & wait; echo c", sandbox = sbox() })
    assert.equal(0, r.code)
    assert.truthy(r.stdout:find("c\n$"))
    -- a nested sandbox tool fails (A5.35)
    if helper.sh("command -v bwrap") ~= "" then
      local b = proc.run({ "bwrap", "--ro-bind", "/", "/", "/bin/true", sandbox = sbox() })
      assert.is_not.equal(0, b.code)
    end
  end)

  it("blocks bpf, perf, io_uring, userfaultfd and keyctl (A5.19)", function()
    for _, op in ipairs({ "bpf", "perf", "io_uring", "userfaultfd", "keyctl" }) do
      assert.equal("EPERM", (probe(sbox(), op)), op)
      local control = probe(nil, op)
      assert.is_not.equal("EPERM", control, op .. " control")
    end
  end)

  it("kills a process that makes a 32-bit system call (A5.20)", function()
    local out, r = probe(sbox(), "int80")
    assert.equal("SYS", r.signal, out)
    -- control: outside, the same call works where the kernel has 32-bit emulation
    local control, cr = probe(nil, "int80")
    assert.truthy(control == "ok" or cr.signal == "SEGV", tostring(control))
  end)

  it("runs setuid binaries without privilege, with no capabilities (A5.21, A5.22)", function()
    local work = workdir()
    local suid = work .. "/suid-probe"
    sh("cp " .. PROBE .. " " .. suid .. " && chown 0:0 " .. suid .. " && chmod 4755 " .. suid)
    if ROOT then
      -- control: outside, an unprivileged user gets euid 0 from it
      local out = sh("setpriv --reuid=65534 --regid=65534 --clear-groups " .. suid .. " euid")
      assert.equal("0\n", out)
    end
    local r = proc.run({ suid, "euid", sandbox = { writable = { work } } })
    assert.equal("1000\n", r.stdout)
    local st = proc.run({ "cat", "/proc/self/status", sandbox = sbox() }).stdout
    assert.truthy(st:find("CapEff:%s+0000000000000000"))
    assert.truthy(st:find("CapBnd:%s+0000000000000000"))
    assert.truthy(st:find("NoNewPrivs:%s+1"))
    assert.truthy(st:find("Seccomp:%s+2"))
    local plain = proc.run({ "cat", "/proc/self/status" }).stdout -- control
    assert.truthy(plain:find("NoNewPrivs:%s+0"))
  end)

  it("closes every inherited descriptor (A5.30)", function()
    -- Lua's io.open does not set close-on-exec: the tide process holds a leakable descriptor.
    local f = assert(io.open(base .. "/leak", "w"))
    local fds = proc.run({ PROBE, "fds", sandbox = sbox() }).stdout
    f:close()
    assert.equal("0 1 2 \n", fds)
  end)

  it("has its own hostname and SysV IPC (A5.36)", function()
    local r = proc.run({ "sh", "-c", "hostname; ipcmk -Q >/dev/null; ipcs -q | grep -c 0x",
      sandbox = sbox({ hostname = "builder" }) })
    assert.equal("builder\n1\n", r.stdout)
    assert.is_not.equal("builder\n", sh("hostname"))
    assert.equal("EPERM", (probe(sbox(), "sethostname")))
    assert.falsy(sh("ipcs -q"):find("0x%x+ +%d+ +%S+ +644"))
  end)
end)

describe("sandbox: network", function()
  local function listener()
    local uv = require("tide.uv")
    local server = uv.new_tcp()
    assert(server:bind("127.0.0.1", 0))
    assert(server:listen(8, function() end))
    return server, tostring(server:getsockname().port)
  end

  it("cuts the host network unless network = true (A5.8)", function()
    local server, port = listener()
    assert.equal("ECONNREFUSED", (probe(sbox(), "connect", port)))
    assert.equal("ok", (probe(sbox({ network = true }), "connect", port)))
    assert.equal("ok", (probe(nil, "connect", port))) -- control
    server:close()
    -- loopback works inside: a build's own test servers can listen
    assert.equal("ok", (probe(sbox(), "bind", "8080")))
  end)

  it("sends no datagram to the host and fails DNS fast with the network off (A5.9)", function()
    local uv = require("tide.uv")
    local got = 0
    local udp = uv.new_udp()
    assert(udp:bind("127.0.0.1", 0))
    local port = tostring(udp:getsockname().port)
    udp:recv_start(function(_, data)
      if data then
        got = got + 1
      end
    end)
    assert.equal("ok", (probe(sbox(), "udp", "127.0.0.1", port))) -- its own loopback
    assert.equal("ENETUNREACH", (probe(sbox({ network = "off" }), "udp", "127.0.0.1", port)))
    assert.equal("ENETUNREACH", (probe(sbox(), "udp", "8.8.8.8", "53")))
    tide.sleep(0.3)
    assert.equal(0, got)
    -- control: with the host's network the same datagram arrives
    assert.equal("ok", (probe(sbox({ network = true }), "udp", "127.0.0.1", port)))
    for _ = 1, 100 do
      if got > 0 then
        break
      end
      tide.sleep(0.02)
    end
    assert.equal(1, got)
    udp:recv_stop()
    udp:close()
    -- name resolution fails, and does not hang
    local r = proc.run({ "getent", "hosts", "example.com", sandbox = sbox(), timeout = 30 })
    assert.is_false(r.timed_out)
    assert.is_not.equal(0, r.code)
  end)

  it("refuses every TCP bind and connect with network = 'off' (A5.10)", function()
    local server, port = listener()
    local src = ([[
      local proc = require("tide.proc")
      for _, op in ipairs({ { "bind", "8080" }, { "connect", "%s" } }) do
        local r = proc.run({ "%s", op[1], op[2], cwd = "/",
          sandbox = { writable = {}, network = "off" } })
        io.write(op[1], "=", r.stdout)
      end
    ]]):format(port, PROBE)
    local out = in_tide({}, src).stdout
    if tonumber((probe(nil, "landlock_abi"))) >= 4 then
      assert.equal("bind=EACCES\nconnect=EACCES\n", out) -- Landlock
    end
    -- control: without Landlock the bind works, only the empty namespace refuses the connect
    out = in_tide({ TIDE_SANDBOX_ASSUME_MISSING = "landlock" }, src).stdout
    assert.equal("bind=ok\nconnect=ENETUNREACH\n", out)
    -- and the default keeps its own loopback for a build's test servers
    assert.equal("ok", (probe(sbox({ network = "loopback" }), "bind", "8080")))
    server:close()
  end)

  it("reaches no host pathname socket unless the network is shared (A5.12)", function()
    local dir = base .. "/sockets-" .. tostring(math.random(1e9))
    sh("mkdir " .. dir .. " && chmod 755 " .. dir)
    local path = dir .. "/s"
    local l = proc.spawn({ PROBE, "listen_unix", path, "10", cwd = base })
    for _ = 1, 100 do
      if helper.sh("test -S " .. path .. " && echo y") == "y\n" then
        break
      end
      tide.sleep(0.02)
    end
    sh("chmod 666 " .. path)
    assert.equal("ECONNREFUSED", (probe(sbox(), "unix", path)))
    assert.equal("ECONNREFUSED", (probe(sbox({ network = "off" }), "unix", path)))
    -- also inside a writable path
    assert.equal("ECONNREFUSED", (probe(sbox({ writable = { dir } }), "unix", path)))
    -- controls: with the host's network, and without the sandbox, it connects
    assert.equal("ok", (probe(sbox({ network = true }), "unix", path)))
    assert.equal("ok", (probe(nil, "unix", path)))
    l:kill("KILL")
    l:wait()
  end)

  it("reaches no host abstract socket (A5.11)", function()
    local name = "tide-spec-" .. tostring(os.time()) .. tostring(math.random(1e6))
    local l = proc.spawn({ PROBE, "listen_abstract", name, "10", cwd = base })
    tide.sleep(0.2)
    assert.equal("ECONNREFUSED", (probe(sbox(), "abstract", name))) -- own netns
    if tonumber((probe(nil, "landlock_abi"))) >= 6 then
      assert.equal("EPERM", (probe(sbox({ network = true }), "abstract", name))) -- Landlock scope
    end
    assert.equal("ok", (probe(nil, "abstract", name))) -- control
    l:kill("KILL")
    l:wait()
  end)
end)

describe("sandbox: limits and the process tree", function()
  it("starts after libgit2 and libcrypto are loaded, with a large heap", function()
    -- The child gets none of tide's heap (MADV_DONTFORK): the loader's records of libraries
    -- opened at run time (libgit2 brings libcrypto) and a big Lua heap live there, and the
    -- child must need neither.
    require("tide.git").init(scratch() .. "/repo")
    local big = {}
    for i = 1, 20000 do
      big[i] = string.rep("x", 100) .. i
    end
    for _ = 1, 20 do
      local r = proc.run({ "sh", "-c", "echo ok", sandbox = sbox(), log = false })
      assert.equal("ok\n", r.stdout)
    end
    assert.equal(20000, #big)
  end)

  it("stops a fork bomb at pids (A5.23)", function()
    local out = probe(sbox({ pids = 20 }), "forks", "100")
    local made, err = out:match("^(%d+) (%S+)")
    assert.equal("EAGAIN", err)
    assert.truthy(tonumber(made) < 20)
    assert.equal("100 ok", (probe(sbox(), "forks", "100"))) -- control
  end)

  it("limits CPU time per process (A5.25)", function()
    local cmd = { "sh", "-c", "while :; do :; done", timeout = 3, grace = 0.2 }
    cmd.sandbox = sbox({ cpu_seconds = 1 })
    local r = proc.run(cmd)
    assert.equal("XCPU", r.signal)
    assert.is_false(r.timed_out)
    cmd.sandbox = sbox() -- control: only the wall timeout stops it
    cmd.timeout = 1.2
    assert.is_true(proc.run(cmd).timed_out)
  end)

  it("enforces memory (A5.24)", function()
    local out, r = probe(sbox({ memory = "64M" }), "alloc", "256")
    assert.is_not.equal("ok", out)
    assert.truthy(r.signal == "KILL" or out == "ENOMEM", tostring(r.signal) .. " " .. tostring(out))
    if ROOT then
      -- a cgroup for the whole sandbox: the OOM killer ends it; the cgroup is gone afterwards
      assert.equal("KILL", r.signal)
      assert.same({}, r.sandbox.missing)
      assert.equal("", helper.sh("ls -d /sys/fs/cgroup/memory/tide/sb-" .. r.pid .. " 2>/dev/null"))
    end
    assert.equal("ok", (probe(sbox(), "alloc", "256"))) -- control
  end)

  it("shows its own cgroups as the root of its cgroup namespace", function()
    local r = proc.run({ "cat", "/proc/self/cgroup", sandbox = sbox({ pids = 64, memory = "1G" }) })
    assert.equal(0, r.code, r.stderr)
    if ROOT then
      assert.same({}, r.sandbox.missing)
    end
    -- With or without cgroups of its own: never the way from tide's cgroup to them.
    assert.is_nil(r.stdout:find("tide/", 1, true), r.stdout)
    for _, ctl in ipairs({ "memory", "pids" }) do
      assert.truthy(r.stdout:find("%d+:" .. ctl .. ":/\n"), r.stdout)
    end
  end)

  it("removes the empty cgroups a killed tide left, once they are a minute old", function()
    if not ROOT then
      return pending("cgroups are made only as root")
    end
    local root = "/sys/fs/cgroup/pids/tide"
    sh("mkdir -p " .. root)
    local tag = tostring(math.random(1e8, 9e8))
    local old = { root .. "/sb-" .. tag, root .. "/new-" .. tag .. "-0" }
    local young = root .. "/sb-" .. tag .. "1"
    for _, d in ipairs(old) do
      sh("mkdir " .. d .. " && touch -d '2 minutes ago' " .. d)
    end
    sh("mkdir " .. young)
    -- The sweep runs at a process's first sandbox with limits: a new tide.
    local script = workdir() .. "/sweep.lua"
    helper.write(script, [[
      local r = require("tide.proc").run({ "true", sandbox = { writable = {}, pids = 64 } })
      io.write(r.code, " ", table.concat(r.sandbox.missing, ","), "\n")
    ]])
    local out = proc.run({ helper.tide, script, cwd = base })
    local left = helper.sh("ls -d " .. table.concat(old, " ") .. " " .. young .. " 2>/dev/null")
    sh("rmdir " .. young)
    assert.equal("0 \n", out.stdout, out.stderr)
    assert.equal(young .. "\n", left)
  end)

  it("keeps exit codes, signals and rusage", function()
    assert.equal(7, proc.run({ "sh", "-c", "exit 7", sandbox = sbox() }).code)
    local r = proc.run({ "sh", "-c", "kill -KILL $$", sandbox = sbox() })
    assert.equal("KILL", r.signal)
    assert.equal(137, r.code)
    r = proc.run({ "sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
      sandbox = sbox() })
    assert.truthy(r.cpu_user + r.cpu_sys > 0.05)
    assert.truthy(r.max_rss > 0)
    local e = raises("ENOENT", proc.run, { "/nonexistent/prog", sandbox = sbox() })
    assert.truthy(e.message:find("cannot execute"))
    -- a cwd that exists outside but not inside (the host's /tmp is not there)
    local host_tmp = assert(io.popen("mktemp -d /tmp/tide-sb-cwd.XXXXXX")):read("l")
    e = raises("ENOENT", proc.run, { "/bin/true", cwd = host_tmp, sandbox = sbox() })
    os.remove(host_tmp)
    assert.truthy(e.message:find("cannot change to directory"), e.message)
  end)

  it("takes its program later (exec_later), and ends at once when let go without one",
    function()
      local native = require("tide._proc")
      local p = assert(native.spawn({ exec_later = true, sandbox = sbox(), cwd = base,
        lines = true, name = "later" }))
      assert.is_true(p:exec({ "sh", "-c", "echo \"$X\" $$; exit 5", env = { X = "late" } }))
      local lines = {}
      local r
      repeat
        local _, got
        r, _, got = p:wait()
        for _, l in ipairs(got or {}) do
          lines[#lines + 1] = l
        end
      until r ~= "lines"
      p:close()
      assert.same({ "late 2" }, lines) -- pid 2: the init is pid 1
      assert.equal(5, r.code)
      -- Once only; nothing else is taken with exec_later
      local q = assert(native.spawn({ exec_later = true, sandbox = sbox(), cwd = base }))
      local ok, msg = q:exec({ "/nonexistent/prog" })
      assert.is_nil(ok)
      assert.truthy(msg:find("cannot execute '/nonexistent/prog'", 1, true), msg)
      assert.equal(127, q:wait().code)
      q:close()
      q = assert(native.spawn({ exec_later = true, sandbox = sbox(), cwd = base }))
      local code
      ok, msg, code = q:exec({ "no-such-program-anywhere" })
      assert.is_nil(ok)
      assert.equal("ENOENT", code, msg)
      local qr = q:wait()
      assert.equal(127, qr.code)
      assert.is_false(qr.cancelled)
      q:close()
      assert.has_error(function()
        native.spawn({ "true", exec_later = true, sandbox = sbox() })
      end)
      assert.has_error(function()
        native.spawn({ exec_later = true })
      end)
      -- Let go before its program, many times over and at once: each ends within the moment,
      -- and no signal meant for one reaches tide (which would cancel this very test).
      local t0 = tide.monotime()
      for _ = 1, 30 do
        local w = assert(native.spawn({ exec_later = true, sandbox = sbox(), cwd = base,
          grace = 5 }))
        w:close()
      end
      tide.sleep(0.2)
      assert.truthy(tide.monotime() - t0 < 4)
    end)

  it("kills the whole tree on timeout, daemons included (A5.26)", function()
    local tag = "tide-sb-" .. tostring(math.random(1e9))
    local r = proc.run({ "sh", "-c",
      "trap '' TERM; setsid sleep 77 " .. tag .. " & nohup sleep 78 " .. tag ..
      " >/dev/null 2>&1 & (sh -c 'sleep 79 " .. tag .. " &') ; sleep 100",
      sandbox = sbox(), timeout = 0.5, grace = 0.3 })
    assert.is_true(r.timed_out)
    assert.equal(124, r.code)
    assert.is_true(r.wall < 3)
    tide.sleep(0.1)
    assert.equal("", survivors(tag))
  end)

  it("ends what is left when the program exits", function()
    local tag = "tide-sb-left-" .. tostring(math.random(1e9))
    local r = proc.run({ "sh", "-c", "setsid sleep 60 " .. tag .. " >/dev/null 2>&1 &",
      sandbox = sbox() })
    assert.equal(0, r.code)
    assert.is_false(r.pipes_held)
    assert.equal("", survivors(tag))
  end)

  it("dies with tide (A5.27)", function()
    local tag = "tide-sb-orphan-" .. tostring(math.random(1e9))
    local script = base .. "/orphan.lua"
    helper.write(script, ([[
      local proc = require("tide.proc")
      proc.run({ "sleep", "60", "%s", sandbox = { writable = {} } })
    ]]):format(tag))
    local t = proc.spawn({ helper.tide, script, cwd = base })
    for _ = 1, 100 do
      if survivors(tag) ~= "" then
        break
      end
      tide.sleep(0.02)
    end
    t:kill("KILL")
    t:wait()
    local left
    for _ = 1, 100 do
      left = survivors(tag)
      if left == "" then
        break
      end
      tide.sleep(0.02)
    end
    assert.equal("", left)
  end)

  it("runs as an unprivileged outer uid", function()
    local p = proc.spawn({ "sleep", "5", sandbox = sbox() })
    tide.sleep(0.1)
    local status = helper.read("/proc/" .. p:pid() .. "/status")
    assert.truthy(status:find("Uid:%s+" .. OUTER .. "%s"))
    p:kill("KILL")
    p:wait()
  end)
end)

describe("sandbox: policy and missing protections", function()
  it("rejects bad policies with EINPUT naming the key (A5.37)", function()
    local work = workdir()
    local function bad(sb, pattern)
      local e = raises("EINPUT", proc.run, { "/bin/true", sandbox = sb })
      assert.truthy(e.message:find(pattern), e.message)
    end
    bad({ nework = false }, "unexpected key 'nework'")
    bad({ network = "none" }, "sandbox.network")
    bad({ network = 1 }, "sandbox.network")
    bad({ writable = "x" }, "sandbox.writable")
    bad({ writable = { 1 } }, "sandbox.writable")
    bad({ writable = { "relative/dir" } }, "not absolute")
    bad({ writable = { work .. "/../x" } }, "not normalised")
    bad({ writable = { work, work } }, "listed twice")
    bad({ writable = { work .. "/missing" } }, "missing")
    sh("ln -s " .. work .. " " .. work .. "-link")
    bad({ writable = { work .. "-link" } }, "symlink")
    bad({ memory = "lots" }, "sandbox.memory")
    bad({ pids = 0 }, "sandbox.pids")
    bad({ tmp_size = -1 }, "sandbox.tmp_size")
    bad({ require = { "magic" } }, "sandbox.require")
    bad("yes", "option 'sandbox' must be true or a table")
    bad({ hide = { "/" } }, "'/' is not allowed")
    -- the program must not reach tide's own state: no writable path inside the home
    local home = os.getenv("TIDE_HOME")
    if home then
      bad({ writable = { home } }, "lies in tide's state directory")
    end
    -- false is no sandbox at all
    assert.equal("NoNewPrivs:\t0", proc.run({ "grep", "NoNewPrivs", "/proc/self/status",
      sandbox = false }).stdout:gsub("\n", ""))
  end)

  it("reports protections it cannot apply, and refuses when they are required (A5.39)", function()
    local r = proc.run({ "/bin/true", sandbox = sbox() })
    assert.same({}, r.sandbox.missing)
    local script = base .. "/missing.lua"
    helper.write(script, ([[
      local proc = require("tide.proc")
      local r = proc.run({ "/bin/true", sandbox = { writable = {}, memory = "1G" } })
      print("missing=" .. table.concat(r.sandbox.missing, ","))
      local ok, err = pcall(proc.run, { "/bin/true", sandbox = { writable = {},
        require = { "landlock" } } })
      print("required=" .. tostring(ok) .. " " .. tostring(err.code))
      -- without a cgroup, memory falls back to a per-process address-space limit
      r = proc.run({ "%s", "alloc", "256", sandbox = { writable = {}, memory = "64M" } })
      print("alloc=" .. r.stdout)
    ]]):format(PROBE))
    local out = proc.run({ helper.tide, script, cwd = base,
      env = { TIDE_SANDBOX_ASSUME_MISSING = "landlock,cgroup" } })
    assert.truthy(out.stdout:find("missing=landlock,cgroup"), out.stdout .. out.stderr)
    assert.truthy(out.stdout:find("required=false ESANDBOX"), out.stdout)
    assert.truthy(out.stdout:find("alloc=ENOMEM"), out.stdout)
    assert.truthy(out.stderr:find("warning: sandbox: running without landlock,cgroup"), out.stderr)
  end)

  it("works rootless", function()
    if not ROOT then
      return pending("already rootless")
    end
    if helper.sh("setpriv --reuid=65534 --regid=65534 --clear-groups true; echo $?") ~= "0\n" then
      print("sandbox_spec: rootless run SKIPPED: setpriv is unavailable")
      return
    end
    local home, state = workdir(), workdir()
    sh("chown 65534:65534 " .. home .. " " .. state)
    local script = home .. "/rootless.lua"
    helper.write(script, ([[
      local proc = require("tide.proc")
      local r = proc.run({ "sh", "-c", "id -u; echo x > f; cat /proc/self/status | grep NoNew",
        sandbox = { writable = { "%s" }, memory = "1G", pids = 64 }, cwd = "%s" })
      io.write(r.stdout, "missing=", table.concat(r.sandbox.missing, ","), "\n")
      local e = select(2, pcall(proc.run, { "/bin/true",
        sandbox = { writable = {}, pids = 10, require = { "cgroup" } } }))
      io.write("required=", tostring(e.code), "\n")
      for _, op in ipairs({ { "write", "/usr/tide-x" }, { "unshare_user" }, { "ptrace", "1" },
        { "kill", "%d" } }) do
        local cmd = { "%s", table.unpack(op) }
        cmd.sandbox, cmd.cwd = { writable = {} }, "/"
        local p = proc.run(cmd)
        io.write(op[1], "=", p.stdout)
      end
    ]]):format(home, home, tide_pid(), PROBE))
    local r = proc.run({ "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
      helper.tide, script, cwd = home, env = { TIDE_HOME = state, HOME = home } })
    assert.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("^1000\nNoNewPrivs:\t1\nmissing=cgroup\nrequired=ESANDBOX\n"),
      r.stdout)
    assert.equal("65534\n", sh("stat -c %u " .. home .. "/f"))
    assert.truthy(r.stdout:find("write=EROFS\nunshare_user=EPERM\nptrace=EPERM\nkill=ESRCH\n",
      1, true), r.stdout)
  end)

  it("gives parallel sandboxes no view of each other's workspaces (A5.38)", function()
    local dirs, procs = {}, {}
    for i = 1, 6 do
      dirs[i] = workdir()
      helper.write(dirs[i] .. "/mine", tostring(i))
    end
    for i = 1, 6 do
      local others = {}
      for j = 1, 6 do
        if j ~= i then
          others[#others + 1] = dirs[j]
        end
      end
      local cmd = { "sh", "-c", "cat mine; for d in \"$@\"; do touch $d/x 2>/dev/null"
        .. " && echo LEAK; done; echo $#", "sh", table.unpack(others) }
      cmd.sandbox, cmd.cwd = { writable = { dirs[i] } }, dirs[i]
      procs[i] = proc.spawn(cmd)
    end
    for i = 1, 6 do
      local r = procs[i]:wait()
      assert.equal(tostring(i) .. "5\n", r.stdout) -- its own file, and 5 refused writes
    end
    -- control: without the sandbox, the same writes land
    local r = proc.run({ "touch", dirs[2] .. "/x" })
    assert.equal(0, r.code)
  end)
end)

describe("sandbox: tide's home and closed directories", function()
  it("hides tide's home when it lies below a writable path", function()
    -- the home of `tide build` run in a project: ./.tide inside the writable source, both
    -- owned by the user running tide (as root: idmapped, so the program may write them)
    local src = helper.tmpdir()
    sh("chmod 755 " .. src)
    local home = src .. "/.tide"
    helper.write(src .. "/t.lua", [[
      local r = require("tide.proc").run({ "sh", "-c", "ls -A .tide | wc -l; cat .tide/state.db;"
        .. " touch .tide/x 2>&1 || true; touch ok", sandbox = { writable = { arg[1] } } })
      io.stdout:write(r.stdout, r.stderr)
    ]])
    local function run(h)
      return helper.sh("cd " .. src .. " && TIDE_HOME=" .. h .. " TIDE_VIEW=none " .. helper.tide
        .. " t.lua " .. src .. " 2>&1")
    end
    local out, rc = run(home)
    assert.equal(0, rc, out)
    assert.matches("^0\n", out)
    assert.matches("Read%-only file system", out)
    assert.is_nil(helper.read(home .. "/x"))
    assert.truthy(helper.read(home .. "/state.db"))
    assert.equal("", helper.read(src .. "/ok")) -- the rest of the source stays writable
    -- control: with the home elsewhere, the same program reaches that directory's files
    local elsewhere = helper.tmpdir()
    out, rc = run(elsewhere)
    assert.equal(0, rc, out)
    assert.is_nil(out:find("Read-only", 1, true), out)
    assert.equal("", helper.read(home .. "/x"))
  end)

  it("as root, reaches a source below a directory only root may search (/root)", function()
    if not ROOT then
      return pending("runs as root only")
    end
    local closed = helper.tmpdir() -- 0700, owned by root
    sh("echo private > " .. closed .. "/secret.txt && mkdir " .. closed .. "/src")
    local src = closed .. "/src"
    local r = proc.run({ "sh", "-c", "cd " .. src .. " && echo built > out && ls -A " .. closed
      .. " && cat " .. closed .. "/secret.txt 2>&1; true", sandbox = { writable = { src } } })
    assert.equal(0, r.code, r.stderr)
    assert.equal("built\n", helper.read(src .. "/out"))
    assert.equal("0 0", (sh("stat -c '%u %g' " .. src .. "/out"):gsub("\n", "")))
    -- only the mount point of the source shows; the directory's other files stay out of reach
    assert.matches("^src\n", r.stdout)
    assert.is_nil(r.stdout:find("private", 1, true))
    -- control: unsandboxed, the same listing shows the private file
    assert.matches("secret%.txt", proc.run({ "ls", "-A", closed }).stdout)
  end)
end)

describe("sandbox: builds", function()
  it("fails a build whose sandbox cannot be built, never runs it unsandboxed", function()
    local home = os.getenv("TIDE_HOME")
    if not home then
      return pending("needs TIDE_HOME (set by ctest)")
    end
    -- a source directory inside tide's state: the sandbox refuses to make it writable
    local src = home .. "/sbfail-src"
    sh("mkdir -p " .. src)
    local tag = tostring(math.random(1e9))
    local file = base .. "/buildspec-" .. tag .. ".yml"
    helper.write(file, "version: 0.2\nphases:\n  build:\n    commands: ['touch ran-" .. tag
      .. "']\n")
    local bs = require("tide.buildspec")
    local ok, r = pcall(bs.run, { file = file, src = src, project = "sbfail", quiet = true })
    assert.is_nil(helper.read(src .. "/ran-" .. tag))
    local text = ok and require("tide.json").encode(r) or tostring(r.message or r)
    assert.truthy(text:find("lies in tide's state directory", 1, true), text)
    assert.is_true(not ok or r.status ~= "SUCCEEDED", text)
    -- control: --no-sandbox runs it
    r = bs.run({ file = file, src = src, project = "sbfail", quiet = true, sandbox = false })
    assert.equal("SUCCEEDED", r.status)
    assert.equal("", helper.read(src .. "/ran-" .. tag))
  end)

  it("raises when the build shell's sandbox is refused, rather than running without it", function()
    local shell = require("tide.buildspec.shell")
    local dir = workdir()
    local s = shell.new({ dir = dir, shell = "sh", env = {}, cwd = dir,
      sandbox = { writable = { dir }, nework = true } })
    local e = raises("EINPUT", s.spawn, s)
    assert.truthy(e.message:find("unexpected key 'nework'", 1, true), e.message)
    assert.is_nil(s.p)
    -- control: the same session without a sandbox starts
    s = shell.new({ dir = dir, shell = "sh", env = {}, cwd = dir })
    s:spawn()
    assert.truthy(s.p)
    s:close()
  end)
end)
