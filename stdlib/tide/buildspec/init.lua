--- tide.buildspec: run an AWS CodeBuild buildspec locally.
---
---   local bs = require("tide.buildspec")
---   local r = bs.run{ file = "buildspec.yml", src = ".", env = { STAGE = "dev" } }
---   print(r.status, r.phases[5].type, r.exported.IMAGE_TAG)
---
--- parse/validate/plan never run a command; run records the build in state.db (module
--- "builds") and as a tide run: each phase is a task span, the build shell a process span whose
--- log is the whole build output; per-phase logs are kept under HOME/builds/UUID/.
local tide = require("tide")
local fs = require("tide.fs")
local uv = require("tide.uv")
local schema = require("tide.buildspec.schema")
local envmod = require("tide.buildspec.env")
local shell = require("tide.buildspec.shell")
local files = require("tide.buildspec.files")
local artifacts = require("tide.buildspec.artifacts")
local cache = require("tide.buildspec.cache")
local records = require("tide.buildspec.records")

local M = {}

M.PHASES = schema.PHASES
M.secret_ref = schema.secret_ref

local function abspath(p)
  if p:sub(1, 1) ~= "/" then
    p = uv.cwd() .. "/" .. p
  end
  -- Lexical clean-up of "." and ".." so that recorded paths are stable.
  local parts = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return "/" .. table.concat(parts, "/")
end
M.abspath = abspath

local function read_file(path)
  local data, msg = fs.read(path)
  if not data then
    error(tide.error("EINPUT", string.format("%s: cannot read the buildspec: %s", path,
      tostring(msg)), { file = path }), 0)
  end
  return data
end

--- Parses buildspec text (opts.name: the file name in messages). Raises EINPUT.
function M.parse(text, opts)
  return schema.parse(text, opts)
end

--- Reads and checks a buildspec file. Returns the spec; raises EINPUT naming file, line and key.
function M.validate(path)
  return schema.parse(read_file(path), { name = path })
end

--- What a run would do, without running anything: a list of lines.
function M.plan(spec)
  local out = {}
  out[#out + 1] = string.format("buildspec %s, version %s, shell %s", spec.file, spec.version,
    spec.shell or "sh")
  if spec.version == "0.1" then
    out[#out + 1] = "  every command in its own shell (version 0.1)"
  end
  for _, w in ipairs(spec.warnings) do
    out[#out + 1] = "  warning: " .. w
  end
  for _, n in ipairs(spec.not_applicable) do
    out[#out + 1] = "  " .. n .. ": accepted, not applicable locally"
  end
  for _, v in ipairs(spec.variables or {}) do
    out[#out + 1] = string.format("  env %s (literal)", v.name)
  end
  for _, v in ipairs(spec.parameters or {}) do
    out[#out + 1] = string.format("  env %s from parameter '%s'", v.name, v.value)
  end
  for _, v in ipairs(spec.secrets or {}) do
    out[#out + 1] = string.format("  env %s from secret '%s'", v.name, v.ref.id)
  end
  if spec.cache then
    out[#out + 1] = string.format("  cache: restore and save %d path pattern(s)", #spec.cache.paths)
  end
  for _, name in ipairs(schema.PHASES) do
    local ph = spec.phases[name]
    if ph then
      local extra = {}
      if ph.run_as or spec.run_as then
        extra[#extra + 1] = "run-as " .. (ph.run_as or spec.run_as)
      end
      if ph.on_failure then
        extra[#extra + 1] = "on-failure " .. ph.on_failure
      end
      out[#out + 1] = string.format("%s: %d command(s), %d in finally%s", ph.type, #ph.commands,
        #ph.finally, #extra > 0 and (" (" .. table.concat(extra, ", ") .. ")") or "")
      for _, rt in ipairs(ph.runtimes or {}) do
        out[#out + 1] = string.format("  runtime %s %s (checked, not installed)", rt.name,
          rt.version)
      end
    end
  end
  if spec.artifacts then
    out[#out + 1] = string.format("UPLOAD_ARTIFACTS: primary (%d pattern(s))%s",
      #spec.artifacts.files, spec.artifacts.secondary and
      string.format(" and %d secondary", #spec.artifacts.secondary) or "")
  end
  for _, g in ipairs(spec.reports) do
    out[#out + 1] = string.format("report group %s: %s, %d pattern(s)", g.name, g.format, #g.files)
  end
  if spec.batch then
    local b = spec.batch
    local n = b.tasks and #b.tasks or nil
    if not n then
      n = math.max(1, #b.dynamic.buildspecs)
      for _, v in ipairs(b.dynamic.env.variables) do
        n = n * #v.values
      end
      for _, k in ipairs({ "image", "compute-type" }) do
        if type(b.dynamic.env[k]) == "table" then
          n = n * #b.dynamic.env[k]
        end
      end
    end
    out[#out + 1] = string.format("batch %s: %d build(s)%s", b.kind, n, b.fast_fail and
      ", fast-fail" or "")
  end
  return out
end

local function uuid()
  local h = tide.random_hex(16)
  local variant = string.format("%x", 8 + tonumber(h:sub(17, 17), 16) % 4)
  h = h:sub(1, 12) .. "4" .. h:sub(14, 16) .. variant .. h:sub(18)
  return string.format("%s-%s-%s-%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(13, 16), h:sub(17, 20),
    h:sub(21, 32))
end

local function home()
  local ok, store = pcall(require, "tide._store")
  local h = ok and select(2, pcall(store.home)) or nil
  if type(h) ~= "string" then
    h = os.getenv("TIDE_HOME")
    if not h or h == "" then
      h = ".tide"
    end
  end
  return abspath(h)
end

--- Splits "URL-or-path@rev" (rev without ':' or '@'; default HEAD).
function M.split_git(s)
  local url, rev = s:match("^(.+)@([^@:]+)$")
  if not url or url:match("^%a[%w+.-]*://[^/]*$") then
    return s, nil
  end
  return url, rev
end

local function runtime_probe(name)
  local probes = {
    nodejs = "node --version", python = "python3 --version", java = "java -version 2>&1",
    corretto = "java -version 2>&1", golang = "go version", ruby = "ruby --version",
    php = "php --version", dotnet = "dotnet --version", docker = "docker --version",
  }
  return probes[name] or probes[name:match("^(%a+)")]
end

local function version_ok(requested, found)
  if requested == "latest" then
    return true
  end
  local want = requested:gsub("^corretto", ""):gsub("%.x$", "")
  local v = found:match("(%d+[%.%d]*)")
  if not v then
    return false
  end
  return v == want or v:sub(1, #want + 1) == want .. "."
end

-- include/tide/sandbox.h: TIDE_SANDBOX_ROOT_UID.
local SANDBOX_ROOT_UID = 100000

local PHASE_ORDER = { "install", "pre_build", "build", "post_build" }

-- Where shell directories go unless TMPDIR says: /dev/shm when it is a directory tide can write
-- (a tmpfs on Linux), else /tmp. On a disk /tmp the directory's mkdir alone cost a build about
-- 0.1 ms, every script the shell is handed is a file write, and a busy disk's journal stalled
-- such a write now and then for 100 ms. Probed once.
local default_shell_root

--- The directory the build shells' private directories are made in.
function M.shell_root()
  local tmp = os.getenv("TMPDIR")
  if tmp and tmp ~= "" then
    return (tmp:gsub("/+$", ""))
  end
  if not default_shell_root then
    local st = uv.fs_stat("/dev/shm")
    default_shell_root = st and st.type == "directory" and uv.fs_access("/dev/shm", "W")
      and "/dev/shm" or "/tmp"
  end
  return default_shell_root
end

-- Makes the shell's directory: its scripts and status file live outside HOME, which a
-- sandboxed shell may not traverse; as root, the sandbox runs commands as
-- TIDE_SANDBOX_ROOT_UID, who must own it. Unsandboxed as root, a run-as user's shell uses it
-- (run_as_ids) and may not search the parents of TMPDIR: then it lives in /tmp, which everyone
-- can.
local function shell_dir(build_uuid, sandboxed, run_as_ids)
  local dir = string.format("%s/tide-build-%s", run_as_ids and "/tmp" or M.shell_root(),
    build_uuid)
  assert(uv.fs_mkdir(dir, tonumber("700", 8)))
  if sandboxed and uv.getuid() == 0 then
    uv.fs_chown(dir, SANDBOX_ROOT_UID, SANDBOX_ROOT_UID)
  elseif run_as_ids then
    uv.fs_chown(dir, run_as_ids.uid, run_as_ids.gid)
  end
  return dir
end

-- Removes a shell's directory at once, without a blocking call: the clean-up often runs where a
-- task can no longer block (cancelled, as when the script fails right after a build), and the
-- directory holds only the shell's few files (its scripts, state and status).
local function remove_shell_dir(dir)
  local h = uv.fs_scandir(dir)
  while h do
    local name = uv.fs_scandir_next(h)
    if not name then
      break
    end
    os.remove(dir .. "/" .. name)
  end
  uv.fs_rmdir(dir)
end

-- The build's sandbox policy. Artifacts are copied out by tide itself: the output directory
-- stays out of reach.
local function build_sandbox(o, src, dir)
  local sandbox = { network = o.network and true or false, writable = { src, dir } }
  require("tide.buildspec.limits").apply(sandbox, o.limits)
  return sandbox
end

--- Whether a failure of the phase ends the build's phases (the reference's transitions).
local function stops_on_failure(name, ph)
  if ph.on_failure == "ABORT" then
    return true
  end
  return ph.on_failure ~= "CONTINUE" and (name == "install" or name == "pre_build")
end

--- The phases after PHASE_ORDER[i] that the shell can run without a round trip through tide
--- (see Session:run_phase): all of them unless something happens between phases (a run-as
--- user switch, runtime probes), then none.
local function following(spec, i)
  if spec.run_as then
    return nil
  end
  for _, name in ipairs(PHASE_ORDER) do
    local ph = spec.phases[name]
    if ph and (ph.run_as or ph.runtimes) then
      return nil
    end
  end
  local rest = { stops = stops_on_failure(PHASE_ORDER[i], spec.phases[PHASE_ORDER[i]]) }
  for j = i + 1, #PHASE_ORDER do
    local ph = spec.phases[PHASE_ORDER[j]]
    if ph then
      rest[#rest + 1] = { ph = ph, stops = stops_on_failure(PHASE_ORDER[j], ph) }
    end
  end
  return rest
end

--- Builds the result skeleton and the bookkeeping of one run.
local function new_build(opts, spec)
  local b = {
    uuid = opts.uuid or uuid(), project = opts.project, started = tide.now(), src = opts.src,
    initiator = opts.initiator or os.getenv("USER") or "tide",
    batch_identifier = opts.batch_identifier, batch_id = opts.batch_id,
  }
  b.home = home()
  b.builds_root = b.home .. "/builds"
  b.sandboxed = opts.sandbox ~= false -- cache.lua writes host paths only without it
  local rt = require("tide._runtime")
  b.run_id = rt.run_id and rt.run_id() or nil
  b.dir = b.builds_root .. "/" .. b.uuid
  b.file = spec and spec.file or opts.file
  return b
end

local function phase_rec(ptype, status, t0, t1, context)
  local rec = { type = ptype, status = status, start = t0, ["end"] = t1 }
  if t0 and t1 then
    rec.duration = t1 - t0
  end
  rec.contexts = context and { context } or {}
  return rec
end

--- Runs a buildspec. opts: file (path; relative paths are relative to src), text (inline
--- buildspec instead of a file), src (default "."), env (overrides), project (default: the name
--- of src), output (directory for artifacts), git ("URL-or-path@rev"), network (boolean),
--- sandbox (default true), limits ({memory, pids, cpu, tmp_size}: the sandbox's), timeout
--- (seconds, default 3600), quiet, on_line(text, phase),
--- initiator, params/secrets (stores, for tests). Returns the build result; raises EINPUT
--- for a bad buildspec (the build is recorded FAILED in DOWNLOAD_SOURCE first).
function M.run(opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do
    o[k] = v
  end
  o.src = abspath(o.src or ".")
  if o.output then
    o.output = abspath(o.output)
  end
  local git
  if o.git then
    git = envmod.optional("tide.git")
    if not git then
      error(tide.error("EINPUT", "--git: this tide has no git support (tide.git is not available)"),
        0)
    end
  elseif not fs.exists(o.src) then
    error(tide.error("EINPUT", string.format("source directory '%s' does not exist", o.src)), 0)
  end
  if not o.project then
    -- The default names the source: its directory or the repository, made a valid name.
    local base = o.git and (M.split_git(o.git):match("([^/:]+)/*$") or "build"):gsub("%.git$", "")
      or o.src:match("([^/]+)$") or "build"
    o.project = base:gsub("[^%w_-]", "-"):gsub("^[^%w]+", "")
    if o.project == "" then
      o.project = "build"
    end
  end
  if not o.project:match("^[%w][%w_-]*$") then
    error(tide.error("EINPUT", string.format("project name '%s': letters, digits, - and _ only",
      o.project)), 0)
  end

  -- The sandbox is made while tide reads the buildspec and prepares the build: it takes about
  -- 2 ms, tide's own work before the shell can start about 0.5, and the sandbox needs neither
  -- the buildspec nor the environment until its program (the shell) is handed over. A build it
  -- does not suit (a batch, a run-as user inside the sandbox, a buildspec that fails) lets it go.
  local early
  if o.sandbox ~= false and not o.git and not o.in_batch then
    o.uuid = uuid()
    local dir = shell_dir(o.uuid, true)
    local sandbox = build_sandbox(o, o.src, dir)
    local p = shell.prepare({ cwd = o.src, sandbox = sandbox, timeout = o.timeout or 3600 })
    if p then
      early = { p = p, dir = dir, sandbox = sandbox }
    else
      remove_shell_dir(dir) -- the build's own start reports why
    end
  end
  local function drop_early()
    if early then
      early.p:close()
      remove_shell_dir(early.dir)
      early = nil
    end
  end
  -- Whatever ends this call before the session takes the sandbox (an error, a cancel) lets it
  -- go too: a sandbox waiting for a program that never comes would keep tide from exiting.
  local _ <close> = setmetatable({}, { __close = drop_early })

  local spec, spec_err
  local function load()
    if o.text then
      return schema.parse(o.text, { name = o.name or "buildspec override" })
    end
    local f = o.file or "buildspec.yml"
    if f:sub(1, 1) ~= "/" then
      f = o.src .. "/" .. f
    end
    o.file_abs = f
    return schema.parse(read_file(f), { name = o.file_display or (o.file or "buildspec.yml") })
  end
  if not o.git then
    local ok, e = pcall(load)
    if ok then
      spec = e
    else
      spec_err = e
    end
  end

  if spec and spec.batch and not o.in_batch and (o.batch or not spec.has_phases) then
    drop_early()
    o.in_batch = true
    o.uuid = nil
    return require("tide.buildspec.batch").run(spec, o, M.run)
  end

  local b = new_build(o, spec)
  local result = { uuid = b.uuid, project = b.project, status = "IN_PROGRESS", phases = {},
    exported = {}, artifacts = {}, reports = {}, warnings = {}, run_id = b.run_id,
    src = b.src, file = o.file_abs or o.file, started = b.started, log_dir = b.dir,
    batch_identifier = o.batch_identifier, batch_id = o.batch_id }
  records.allocate(b)
  result.id, result.number = b.id, b.number
  -- The log directory and the phase logs are made on the thread pool while the loop thread
  -- starts the sandbox (see start_logs); whatever is not there yet when needed is made here.
  local dir_made = false
  local function make_dir()
    if not dir_made then
      assert(fs.mkdir_p(b.dir))
      dir_made = true
    end
  end

  local echo = o.on_line or function(line)
    if not o.quiet then
      io.stdout:write(line, "\n")
    end
  end
  local phase_logs = {}
  local current_log
  -- Log files open for appending ({name = fd}, false when it cannot be opened). A file made
  -- ahead of its phase that gets no line is removed at the end, so only phases that logged
  -- something have a file, as if each were created at its first write.
  local log_fds, log_written, logs_closed, logs_opening = {}, {}, false, 0
  local LOG_MODE = tonumber("666", 8) -- as io.open: the umask decides
  local function log_path(name)
    return b.dir .. "/" .. name .. ".log"
  end
  local function open_log(name)
    local fd = log_fds[name]
    if fd == nil then
      make_dir()
      fd = uv.fs_open(log_path(name), "a", LOG_MODE) or false
      log_fds[name] = fd
    end
    return fd
  end
  --- Makes the directory and opens the logs of names on the thread pool, without waiting:
  --- file creation costs more than anything else tide does for a build on a busy disk, and
  --- the loop thread is about to wait for the sandbox to start.
  local function start_logs(names)
    local function opened(name)
      return function(err, fd)
        logs_opening = logs_opening - 1
        if err then
          return
        elseif log_fds[name] == nil and not logs_closed then
          log_fds[name] = fd
        else
          -- Opened here in the meantime, or the build is over (it ended within the time of an
          -- open): nothing is written through this one.
          uv.fs_close(fd)
          if logs_closed and not log_written[name] then
            os.remove(log_path(name))
          end
        end
      end
    end
    local function made(err)
      if (not err or tostring(err):match("^EEXIST")) and not logs_closed then
        dir_made = true
        for _, name in ipairs(names) do
          logs_opening = logs_opening + 1
          uv.fs_open(log_path(name), "a", LOG_MODE, opened(name))
        end
      end
      logs_opening = logs_opening - 1
    end
    logs_opening = logs_opening + 1
    uv.fs_mkdir(b.builds_root, tonumber("777", 8), function()
      uv.fs_mkdir(b.dir, tonumber("777", 8), made)
    end)
  end
  local function flush_log(name)
    local buf = phase_logs[name]
    if #buf > 0 then
      local fd = open_log(name)
      if fd then
        local data = table.concat(buf, "\n") .. "\n"
        while #data > 0 do
          local n = uv.fs_write(fd, data)
          if not n or n <= 0 then
            break
          end
          data = data:sub(n + 1)
        end
        log_written[name] = true
      end
      phase_logs[name] = {}
    end
  end
  local function close_logs()
    -- Opens still under way (a build over within the time of an open, a busy thread pool) are
    -- waited for a while, so that the directory holds its final files when the build returns;
    -- past that, or in a cancelled task, their callbacks close and remove what they made.
    local deadline = tide.monotime() + 0.5
    while logs_opening > 0 and tide.monotime() < deadline do
      if not pcall(tide.sleep, 0.001) then
        break
      end
    end
    logs_closed = true
    for name, fd in pairs(log_fds) do
      if fd then
        uv.fs_close(fd)
        if not log_written[name] then
          os.remove(log_path(name))
        end
      end
      log_fds[name] = nil
    end
  end
  local function log(line)
    if current_log then
      local buf = phase_logs[current_log]
      buf[#buf + 1] = line
      if #buf >= 4096 then
        flush_log(current_log) -- a long build's output is not kept in memory
      end
    end
    echo(line, current_log)
  end
  local function flush_logs()
    for name in pairs(phase_logs) do
      flush_log(name)
    end
  end
  -- The log of a phase that ended is written while the shell runs the next one: at once when
  -- the shell already has it, else once its script is sent (see enter and the session).
  local unflushed
  local function flush_unflushed()
    if unflushed then
      flush_log(unflushed)
      unflushed = nil
    end
  end
  local session
  local function enter(ptype)
    if current_log and current_log ~= ptype then
      flush_unflushed()
      unflushed = current_log
      if session and session.pending and #session.pending > 0 then
        flush_unflushed()
      end
    end
    current_log = ptype
    phase_logs[ptype] = phase_logs[ptype] or {}
  end
  local function warn(msg)
    result.warnings[#result.warnings + 1] = msg
    log("[tide] warning: " .. msg)
  end

  local t = tide.now()
  result.phases[#result.phases + 1] = phase_rec("SUBMITTED", "SUCCEEDED", b.started, t)
  result.phases[#result.phases + 1] = phase_rec("QUEUED", "SUCCEEDED", t, t)
  result.phases[#result.phases + 1] = phase_rec("PROVISIONING", "SUCCEEDED", t, t)

  local function finish(status)
    local now = tide.now()
    result.status = status
    result.phases[#result.phases + 1] = phase_rec("COMPLETED", nil, now, nil)
    result.ended = now
    result.duration = now - b.started
    flush_logs()
    close_logs()
    make_dir()
    records.finish(result)
    return result
  end

  -- DOWNLOAD_SOURCE: the checkout, the buildspec, the stores, the cache.
  enter("DOWNLOAD_SOURCE")
  local t0 = tide.now()
  local down_code
  local resolved, masks = {}, {}
  local ok, e = pcall(function()
    if o.git then
      make_dir()
      local url, rev = M.split_git(o.git)
      b.src = b.dir .. "/src"
      result.src = b.src
      local repo = git.checkout_to(url, rev or "HEAD", b.src)
      b.source_version = rev or "HEAD"
      b.source_repo_url = url
      b.resolved_source_version = repo:resolve("HEAD")
      o.src = b.src
      local sok, s = pcall(load)
      if not sok then
        spec_err = s
      else
        spec = s
      end
    else
      -- Only the top of a work tree: opening libgit2 for every other directory costs
      -- milliseconds a build without git does not need to pay.
      local g = fs.exists(b.src .. "/.git") and envmod.optional("tide.git")
      if g then
        local gok, repo = pcall(g.open, b.src)
        if gok and repo then
          local rok, id = pcall(repo.resolve, repo, "HEAD")
          if rok then
            b.resolved_source_version = id
          end
        end
      end
    end
    if spec_err then
      error(spec_err, 0)
    end
    resolved, masks = envmod.resolve_stores(spec, o)
  end)
  if not ok then
    drop_early()
    local msg = type(e) == "table" and e.message or tostring(e)
    down_code = type(e) == "table" and e.code or "EFAULT"
    local sc = (type(e) == "table" and e.yaml) and "YAML_FILE_ERROR" or "CLIENT_ERROR"
    if type(e) == "table" and e.key and not e.yaml and spec == nil then
      sc = "YAML_FILE_ERROR"
    end
    log("[Container] " .. sc .. ": " .. msg)
    result.phases[#result.phases + 1] = phase_rec("DOWNLOAD_SOURCE", "FAILED", t0, tide.now(),
      { statusCode = sc, message = msg })
    result.phases[#result.phases + 1] = phase_rec("FINALIZING", "SUCCEEDED", tide.now(), tide.now())
    finish("FAILED")
    if down_code == "EINPUT" or down_code == "EUSAGE" then
      error(tide.error("EINPUT", msg, { build = result }), 0)
    end
    return result
  end
  result.file = o.file_abs or result.file
  result.version = spec.version
  result.source_version = b.source_version
  result.resolved_source_version = b.resolved_source_version
  for _, w in ipairs(spec.warnings) do
    warn(w)
  end
  for _, n in ipairs(spec.not_applicable) do
    log("[tide] " .. n .. ": accepted; not applicable to a local build")
  end
  result.not_applicable = spec.not_applicable
  if spec.cache then
    make_dir()
    result.cache_restored = cache.restore(spec.cache, b, log)
  end
  result.phases[#result.phases + 1] = phase_rec("DOWNLOAD_SOURCE", "SUCCEEDED", t0, tide.now())

  local env = envmod.build(spec, b, resolved, o.env)
  result.env_names = {}
  for k in pairs(env) do
    result.env_names[#result.env_names + 1] = k
  end
  table.sort(result.env_names)

  local lim = require("tide.buildspec.limits")
  local run_as_ids
  if o.sandbox == false and uv.getuid() == 0 then
    run_as_ids = lim.build_user(spec) and lim.user_ids(lim.build_user(spec))
  end
  -- run-as inside the sandbox: the user's ids there, which the sandbox made early lacks.
  local ids = o.sandbox ~= false and spec.run_as and lim.user_ids(spec.run_as)
  local shdir, sandbox
  if early then
    shdir = early.dir
    if ids then
      early.p:close()
      early = nil
    else
      sandbox = early.sandbox
    end
  else
    shdir = shell_dir(b.uuid, o.sandbox ~= false, run_as_ids)
  end
  if o.sandbox ~= false and not sandbox then
    sandbox = build_sandbox(o, b.src, shdir)
    if ids then
      sandbox.uid, sandbox.gid = ids.uid, ids.gid
    end
  end
  if o.sandbox == false then
    result.sandbox = "off (--no-sandbox)"
    log("[tide] the sandbox is off (--no-sandbox): commands see the whole host")
  end
  local timeout = o.timeout or 3600
  session = shell.new({ dir = shdir, shell = spec.shell == "bash" and "bash" or "sh",
    env = env, cwd = b.src, deadline = tide.monotime() + timeout, sandbox = sandbox,
    version = spec.version, masks = masks, on_line = log, on_sent = flush_unflushed,
    early = early and early.p })
  early = nil
  local function masked(s)
    return session:mask(s)
  end

  local status = "SUCCEEDED"
  local failed_any = false
  local skip_to_finalizing = false
  local stopped, timed_out, fault

  local function sandbox_note()
    if session.sandbox_refused and not result.sandbox then
      result.sandbox = "NOT APPLIED: " .. session.sandbox_refused
      warn("THE SANDBOX IS NOT AVAILABLE IN THIS TIDE; the build runs UNSANDBOXED "
        .. (o.network and "" or "and WITH the network ") .. "(" .. session.sandbox_refused .. ")")
    elseif sandbox and not result.sandbox and session.p then
      result.sandbox = o.network and "on, network allowed" or "on, no network"
    end
  end

  local function runtimes(ph)
    local list = {}
    for _, rt in ipairs(ph.runtimes or {}) do
      local want = rt.version
      if want:sub(1, 1) == "$" then
        local name = want:match("^%${?([%w_]+)}?$")
        want = name and env[name] or want
      end
      local probe = runtime_probe(rt.name)
      local found = probe and session:output(probe .. " 2>/dev/null | head -n 1") or nil
      found = found and found:gsub("%s+$", "") or ""
      local item = { name = rt.name, requested = want, found = found ~= "" and found or nil }
      item.ok = item.found ~= nil and version_ok(want, found)
      if item.ok then
        log(string.format("[Container] runtime %s %s: found %s", rt.name, want, found))
      else
        warn(string.format("runtime %s %s: %s (tide does not install runtimes)", rt.name, want,
          item.found and ("found " .. item.found) or "not installed"))
      end
      list[#list + 1] = item
    end
    return list
  end

  local function run_phase(i)
    local name = PHASE_ORDER[i]
    local ph = spec.phases[name]
    local ptype = schema.PHASE_TYPE[name]
    enter(ptype)
    local start = tide.now()
    if not ph then
      return phase_rec(ptype, "SUCCEEDED", start, start)
    end
    local rec
    local task = tide.spawn(ptype, function()
      local user = ph.run_as or spec.run_as
      if user and sandbox and not session.sandbox_refused then
        if user ~= "root" and not (user == spec.run_as and sandbox.uid) then
          warn(string.format("run-as %s: not applied inside the sandbox", user))
        end
      elseif user and user ~= "root" then
        local uok, why = session:set_user(user)
        if not uok then
          log("[Container] " .. why)
          rec = phase_rec(ptype, "FAILED", start, tide.now(), { statusCode = "CLIENT_ERROR",
            message = why })
          error(tide.error("EPHASE", why), 0)
        end
      end
      if ph.runtimes then
        result.runtimes = runtimes(ph)
      end
      local r = session:run_phase(ph, not failed_any, following(spec, i))
      sandbox_note()
      rec = phase_rec(ptype, r.status, start, tide.now(), r.context)
      rec.commands = r.commands
      rec.finally = r.finally
      if r.status ~= "SUCCEEDED" then
        error(tide.error("EPHASE", ptype .. " " .. r.status), 0)
      end
    end)
    local wok, werr = pcall(task.wait, task)
    if not wok then
      if type(werr) == "table" and werr.code == "ECANCELED" then
        error(werr, 0)
      elseif not (type(werr) == "table" and werr.code == "EPHASE") then
        error(werr, 0)
      end
    end
    return rec
  end

  local rok, rerr = pcall(function()
    if not dir_made then
      local logs = { "UPLOAD_ARTIFACTS", "FINALIZING" }
      if #phase_logs.DOWNLOAD_SOURCE > 0 then
        logs[#logs + 1] = "DOWNLOAD_SOURCE"
      end
      for _, name in ipairs(PHASE_ORDER) do
        if spec.phases[name] then
          logs[#logs + 1] = schema.PHASE_TYPE[name]
        end
      end
      start_logs(logs)
    end
    -- Started here, not in the first phase's task, so that the shell's span is the build's.
    session:spawn()
    sandbox_note()
    for i = 1, #PHASE_ORDER do
      local name = PHASE_ORDER[i]
      local rec = run_phase(i)
      result.phases[#result.phases + 1] = rec
      if rec.status == "TIMED_OUT" then
        timed_out = true
        break
      elseif rec.status == "FAILED" then
        failed_any = true
        local ph = spec.phases[name]
        if stops_on_failure(name, ph) then
          skip_to_finalizing = true
          break
        end
      end
    end
    session:flush_rest()
    if not timed_out then
      -- Frozen after post_build (or the last phase that ran).
      local names = {}
      for _, n in ipairs(spec.exported or {}) do
        if not n:match("^AWS_") then
          names[#names + 1] = n
        end
      end
      result.exported = session:capture(names)
      for k, v in pairs(result.exported) do
        result.exported[k] = masked(v)
      end
    end
    -- Artifacts, the cache and reports are read from the source once nothing the build started
    -- runs any more: a process left running in the sandbox could otherwise swap a file tide has
    -- checked for a link to a host file before tide reads it. The sandbox ends with its shell,
    -- so the shell expands the artifact names first, then goes.
    local names, shell_ended = {}, false
    local function expand(text)
      if names[text] == nil then
        names[text] = not shell_ended and session:expand(text) or false
      end
      return names[text] or nil
    end
    if sandbox and (spec.artifacts or spec.cache or #spec.reports > 0) then
      if spec.artifacts and not timed_out and not skip_to_finalizing then
        for _, a in ipairs({ spec.artifacts, table.unpack(spec.artifacts.secondary or {}) }) do
          if a.name then
            expand(a.name)
          end
        end
      end
      session:stop(true)
      shell_ended = true
    end
    if not timed_out and not skip_to_finalizing then
      make_dir()
      enter("UPLOAD_ARTIFACTS")
      local u0 = tide.now()
      log("[Container] Entering phase UPLOAD_ARTIFACTS")
      local arts, aerr = artifacts.upload(spec, { src = b.src, uuid = b.uuid, project = b.project,
        number = b.number, output = o.output, dir = b.dir, home = b.home,
        sandboxed = b.sandboxed }, expand, log)
      local urec
      if arts then
        result.artifacts = arts
        urec = phase_rec("UPLOAD_ARTIFACTS", "SUCCEEDED", u0, tide.now())
      else
        failed_any = true
        log("[Container] " .. aerr)
        urec = phase_rec("UPLOAD_ARTIFACTS", "FAILED", u0, tide.now(),
          { statusCode = "CLIENT_ERROR", message = aerr })
      end
      if spec.cache then
        result.cache_saved = cache.save(spec.cache, b, log)
      end
      log("[Container] Phase complete: UPLOAD_ARTIFACTS State: " .. urec.status)
      result.phases[#result.phases + 1] = urec
    end
  end)
  if rok then
    -- A clean end (stdin closed, the shell exits) rather than a kill, so the span stays "ok";
    -- the build does not wait for it. The shell is told here, not in the task: a task whose
    -- parent fails before it starts never runs, and a shell still waiting for input would keep
    -- tide from ever exiting.
    session:end_input(true)
    tide.spawn("buildspec shell exit", function()
      pcall(session.stop, session, true)
      session:close()
    end)
  else
    session:close()
  end
  if not rok then
    if type(rerr) == "table" and rerr.code == "ECANCELED" then
      stopped = true
      local last = result.phases[#result.phases]
      local cur = current_log
      if not last or last.type ~= cur then
        result.phases[#result.phases + 1] = phase_rec(cur, "STOPPED", tide.now(), tide.now())
      end
    else
      fault = type(rerr) == "table" and (rerr.message or tostring(rerr)) or tostring(rerr)
      log("[tide] internal error: " .. fault)
      result.fault = fault
    end
  end

  enter("FINALIZING")
  local f0 = tide.now()
  if not stopped then
    local rpok, rperr = pcall(M.process_reports, spec, b, result, log)
    if not rpok then
      warn("reports: " .. (type(rperr) == "table" and rperr.message or tostring(rperr)))
    end
  end
  result.phases[#result.phases + 1] = phase_rec("FINALIZING", "SUCCEEDED", f0, tide.now())
  if stopped then
    status = "STOPPED"
  elseif timed_out then
    status = "TIMED_OUT"
  elseif fault then
    status = "FAULT"
  elseif failed_any then
    status = "FAILED"
  end
  if not result.sandbox then
    result.sandbox = sandbox and (session.sandbox_refused and ("NOT APPLIED: "
      .. session.sandbox_refused) or "on") or "off"
  end
  -- Not left to the task above, which a script failing right after the build cancels before it
  -- runs: the shell has read every script whole, and the last line it gets ends it without
  -- writing its state. (A shell being killed may still write it: that leaves the directory.)
  remove_shell_dir(shdir)
  log(string.format("[tide] build %s %s", b.id, status))
  return finish(status)
end

--- FINALIZING's reports: selects each group's files, parses, records and prints a summary.
function M.process_reports(spec, b, result, log)
  if #spec.reports == 0 then
    return
  end
  local reports = envmod.optional("tide.reports")
  for _, g in ipairs(spec.reports) do
    local group = g.name:match("^arn:") and g.name or (b.project .. "-" .. g.name)
    local sel = files.select(b.src, g, b.home, not b.sandboxed) -- host paths only unsandboxed
    local entry = { group = group, name = g.name, format = g.format, files = {} }
    if not reports then
      entry.error = "not processed: tide.reports is not available"
      log(string.format("[tide] report group '%s': %d file(s), not processed (no tide.reports)",
        group, #sel))
    else
      local results = {}
      for _, f in ipairs(sel) do
        local ok, r = pcall(reports.parse, f.path, g.format)
        if ok then
          results[#results + 1] = r
          entry.files[#entry.files + 1] = { path = f.rel, summary = r.summary }
        else
          local msg = type(r) == "table" and r.message or tostring(r)
          results[#results + 1] = { file = f.path, error = msg }
          entry.files[#entry.files + 1] = { path = f.rel, error = msg }
        end
      end
      if #results > 0 then
        entry.report_id = reports.record(b.id or result.id, group, results)
        for _, line in ipairs(reports.summary_lines({ [group] = results })) do
          log("[Container] " .. line)
        end
      else
        log(string.format("[Container] report group '%s': no files matched", group))
      end
    end
    result.reports[#result.reports + 1] = entry
  end
end

M.records = records

return M
