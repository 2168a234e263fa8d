--- tide.buildspec.schema: reads a buildspec's YAML into a checked, normalized table. Every
--- rejection names the file, the line and column, and the key path:
---   ci/buildspec.yml:7:5: phases.biuld: unknown key (did you mean 'build'?)
--- Nothing here runs a command or touches the file system beyond reading the file.
local tide = require("tide")
local yaml = require("tide.yaml")

local M = {}

M.PHASES = { "install", "pre_build", "build", "post_build" }
M.PHASE_TYPE = { install = "INSTALL", pre_build = "PRE_BUILD", build = "BUILD",
  post_build = "POST_BUILD" }

M.REPORT_FORMATS = {
  CUCUMBERJSON = true, JUNITXML = true, NUNITXML = true, NUNIT3XML = true, TESTNGXML = true,
  VISUALSTUDIOTRX = true, CLOVERXML = true, COBERTURAXML = true, JACOCOXML = true,
  SIMPLECOV = true,
}

-- Keys that real buildspecs carry in the wrong place. AWS ignores them; tide does too, with a
-- warning, so that such files still build. Anything else unknown is an error (a typo).
local TOLERATED = {
  ["exported-variables"] = "belongs under 'env'; ignored here",
  ["env.compute-type"] = "is a batch task setting, not an 'env' key; ignored",
}

local Ctx = {}
Ctx.__index = Ctx

local function fail(ctx, tbl, key, path, fmt, ...)
  local line, col
  if tbl ~= nil then
    if key ~= nil then
      line, col = ctx.where:at(tbl, key)
      if not line then
        line, col = ctx.where:key_at(tbl, key)
      end
    else
      line, col = ctx.where:at(tbl)
    end
  end
  local at = line and string.format("%s:%d:%d", ctx.name, line, col) or ctx.name
  local msg = string.format(fmt, ...)
  error(tide.error("EINPUT", string.format("%s: %s: %s", at, path, msg),
    { file = ctx.name, line = line, key = path }), 0)
end
M.fail = fail

local function kind(v)
  if v == yaml.null then
    return "null"
  end
  local t = type(v)
  if t == "table" then
    return (#v > 0 or next(v) == nil) and "a list" or "a mapping"
  end
  return "a " .. t
end

local function is_map(v)
  return type(v) == "table" and (next(v) == nil or #v == 0)
end

local function is_list(v)
  return type(v) == "table" and (next(v) == nil or #v > 0)
end

local function distance(a, b)
  if math.abs(#a - #b) > 2 then
    return 99
  end
  local prev = {}
  for j = 0, #b do
    prev[j] = j
  end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- Checks that tbl is a mapping whose keys are all in known (a set); returns the keys in
--- document order.
local function keys(ctx, parent, pkey, tbl, path, known)
  if not is_map(tbl) then
    fail(ctx, parent, pkey, path, "expected a mapping, got %s", kind(tbl))
  end
  local list = ctx.where:keys(tbl) or {}
  for _, k in ipairs(list) do
    if known and not known[k] then
      local full = path == "" and k or path .. "." .. k
      local why = TOLERATED[full]
      if why then
        ctx.warnings[#ctx.warnings + 1] = string.format("%s:%d: %s %s", ctx.name,
          (ctx.where:key_at(tbl, k)), full, why)
      else
        local best, bd = nil, 3
        for cand in pairs(known) do
          local d = distance(k, cand)
          if d < bd or (d == bd and best and cand < best) then
            best, bd = cand, d
          end
        end
        local line, col = ctx.where:key_at(tbl, k)
        error(tide.error("EINPUT", string.format("%s:%d:%d: %s: unknown key%s", ctx.name, line,
          col, full, best and (" (did you mean '" .. best .. "'?)") or ""),
          { file = ctx.name, line = line, key = full }), 0)
      end
    end
  end
  return list
end

--- A scalar as the text it was written as (numbers keep "3.10", booleans "yes").
local function text(ctx, tbl, key, path)
  local v = tbl[key]
  local t = type(v)
  if t == "string" then
    return v
  elseif t == "number" or t == "boolean" then
    return ctx.where:raw(tbl, key) or tostring(v)
  end
  fail(ctx, tbl, key, path, "expected a string, got %s", kind(v))
end

local function bool(ctx, tbl, key, path)
  local v = tbl[key]
  if v == nil then
    return nil
  end
  if type(v) == "boolean" then
    return v
  end
  if type(v) == "string" then
    local l = v:lower()
    if l == "yes" or l == "true" then
      return true
    elseif l == "no" or l == "false" then
      return false
    end
  end
  fail(ctx, tbl, key, path, "expected yes or no, got %s", type(v) == "string" and
    ("'" .. v .. "'") or kind(v))
end

local function strings(ctx, tbl, key, path, what)
  local v = tbl[key]
  if not is_list(v) or v == yaml.null then
    fail(ctx, tbl, key, path, "expected a list of %s, got %s", what or "strings", kind(v))
  end
  local out = {}
  for i = 1, #v do
    local item = v[i]
    if type(item) == "table" then
      fail(ctx, v, i, string.format("%s[%d]", path, i),
        "expected a string, got %s (quote an item that holds ': ')", kind(item))
    elseif item == yaml.null then
      fail(ctx, v, i, string.format("%s[%d]", path, i), "empty item")
    end
    -- The path is only for a message: not formatted for every item of a long list.
    out[i] = type(item) == "string" and item or text(ctx, v, i, string.format("%s[%d]", path, i))
  end
  return out
end

local function line_of(ctx, tbl, key)
  return (ctx.where:at(tbl, key))
end

--- A relative path or glob must stay inside the directory it is relative to.
local function contained(ctx, tbl, key, path, p)
  if p:sub(1, 1) == "/" then
    return p
  end
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then
      fail(ctx, tbl, key, path, "'%s' leaves the source directory ('..')", p)
    end
  end
  return p
end

local function path_list(ctx, tbl, key, path)
  local list = strings(ctx, tbl, key, path, "paths")
  for i, p in ipairs(list) do
    contained(ctx, tbl[key], i, string.format("%s[%d]", path, i), p)
  end
  return list
end

local ENV_KEYS = { shell = true, variables = true, ["parameter-store"] = true,
  ["secrets-manager"] = true, ["exported-variables"] = true, ["git-credential-helper"] = true }

local function name_map(ctx, env, key, path)
  local m = env[key]
  local out = {}
  for _, k in ipairs(keys(ctx, env, key, m, path)) do
    local p = path .. "." .. k
    if not k:match("^[%a_][%w_]*$") then
      fail(ctx, m, k, p, "'%s' is not a valid variable name", k)
    end
    if k:match("^CODEBUILD_") then
      fail(ctx, m, k, p, "names starting with CODEBUILD_ are reserved")
    end
    out[#out + 1] = { name = k, value = text(ctx, m, k, p), line = line_of(ctx, m, k), key = p }
  end
  return out
end

--- Splits a secrets-manager reference secret-id:json-key:version-stage:version-id. An ARN
--- secret id holds colons itself: its first 7 fields are the id.
function M.secret_ref(ref)
  local fields = {}
  for f in (ref .. ":"):gmatch("(.-):") do
    fields[#fields + 1] = f
  end
  local id
  if ref:sub(1, 4) == "arn:" then
    if #fields < 7 then
      return nil, "an ARN secret id has 7 ':'-separated fields"
    end
    id = table.concat(fields, ":", 1, 7)
    fields = { id, table.unpack(fields, 8) }
  end
  if #fields > 4 then
    return nil, "too many ':' fields (secret-id:json-key:version-stage:version-id)"
  end
  local r = { id = fields[1], json_key = fields[2], stage = fields[3], version_id = fields[4] }
  for k, v in pairs(r) do
    if v == "" then
      r[k] = nil
    end
  end
  if not r.id then
    return nil, "the secret id is empty"
  end
  if r.stage and r.version_id then
    return nil, "version-stage and version-id are mutually exclusive"
  end
  return r
end

local function parse_env(ctx, root, out)
  local env = root.env
  if env == nil then
    return
  end
  for _, k in ipairs(keys(ctx, root, "env", env, "env", ENV_KEYS)) do
    local p = "env." .. k
    if k == "shell" then
      local s = text(ctx, env, k, p)
      if s ~= "bash" and s ~= "/bin/sh" and s ~= "sh" then
        if s == "powershell.exe" or s == "cmd.exe" or s == "pwsh" then
          fail(ctx, env, k, p, "'%s' is a Windows shell; tide runs bash or /bin/sh", s)
        end
        fail(ctx, env, k, p, "expected bash or /bin/sh, got '%s'", s)
      end
      out.shell = s
    elseif k == "variables" then
      out.variables = name_map(ctx, env, k, p)
    elseif k == "parameter-store" then
      out.parameters = name_map(ctx, env, k, p)
    elseif k == "secrets-manager" then
      out.secrets = name_map(ctx, env, k, p)
      for _, s in ipairs(out.secrets) do
        local ref, why = M.secret_ref(s.value)
        if not ref then
          fail(ctx, env[k], s.name, p .. "." .. s.name, "bad reference '%s': %s", s.value, why)
        end
        s.ref = ref
      end
    elseif k == "exported-variables" then
      out.exported = strings(ctx, env, k, p, "variable names")
      for i, n in ipairs(out.exported) do
        if not n:match("^[%a_][%w_]*$") then
          fail(ctx, env[k], i, string.format("%s[%d]", p, i), "'%s' is not a variable name", n)
        end
      end
    elseif k == "git-credential-helper" then
      out.git_credential_helper = bool(ctx, env, k, p)
      if out.git_credential_helper then
        out.not_applicable[#out.not_applicable + 1] = "env.git-credential-helper"
      end
    end
  end
end

local PHASE_KEYS = { ["run-as"] = true, ["on-failure"] = true, commands = true, finally = true }
local INSTALL_KEYS = { ["run-as"] = true, ["on-failure"] = true, commands = true, finally = true,
  ["runtime-versions"] = true }
local PHASE_SET = { install = true, pre_build = true, build = true, post_build = true }

local function user_name(ctx, tbl, key, path)
  local u = text(ctx, tbl, key, path)
  if not u:match("^[%w_][%w_.-]*%$?$") then
    fail(ctx, tbl, key, path, "'%s' is not a user name", u)
  end
  return u
end

local function parse_phases(ctx, root, out)
  local phases = root.phases
  out.phases = {}
  if phases == nil then
    return
  end
  for _, name in ipairs(keys(ctx, root, "phases", phases, "phases", PHASE_SET)) do
    local p = "phases." .. name
    local ph = phases[name]
    local known = name == "install" and INSTALL_KEYS or PHASE_KEYS
    local res = { name = name, type = M.PHASE_TYPE[name], line = line_of(ctx, phases, name) }
    if ph == yaml.null then
      ph = {}
    end
    for _, k in ipairs(keys(ctx, phases, name, ph, p, known)) do
      local kp = p .. "." .. k
      if k == "commands" or k == "finally" then
        res[k] = strings(ctx, ph, k, kp, "commands")
      elseif k == "run-as" then
        res.run_as = user_name(ctx, ph, k, kp)
      elseif k == "on-failure" then
        local v = text(ctx, ph, k, kp)
        if v ~= "ABORT" and v ~= "CONTINUE" then
          fail(ctx, ph, k, kp, "expected ABORT or CONTINUE, got '%s'", v)
        end
        res.on_failure = v
      elseif k == "runtime-versions" then
        local rv = ph[k]
        res.runtimes = {}
        for _, rt in ipairs(keys(ctx, ph, k, rv, kp)) do
          res.runtimes[#res.runtimes + 1] = { name = rt,
            version = text(ctx, rv, rt, kp .. "." .. rt) }
        end
        if #res.runtimes == 0 then
          fail(ctx, ph, k, kp, "lists no runtime")
        end
      end
    end
    if name ~= "install" and ph.commands == nil and (ph.finally ~= nil or ph["run-as"] ~= nil
        or ph["on-failure"] ~= nil) then
      fail(ctx, phases, name, p .. ".commands", "required when the phase is present")
    end
    res.commands = res.commands or {}
    res.finally = res.finally or {}
    out.phases[name] = res
  end
end

local REPORT_KEYS = { files = true, ["base-directory"] = true, ["discard-paths"] = true,
  ["file-format"] = true }

local function parse_reports(ctx, root, out)
  out.reports = {}
  local reports = root.reports
  if reports == nil then
    return
  end
  for _, name in ipairs(keys(ctx, root, "reports", reports, "reports")) do
    local p = "reports." .. name
    local g = reports[name]
    keys(ctx, reports, name, g, p, REPORT_KEYS)
    if g.files == nil then
      fail(ctx, reports, name, p .. ".files", "required")
    end
    local r = { name = name, files = path_list(ctx, g, "files", p .. ".files"),
      discard_paths = bool(ctx, g, "discard-paths", p .. ".discard-paths") or false,
      format = "JUNITXML", line = line_of(ctx, reports, name) }
    if g["base-directory"] ~= nil then
      r.base_directory = contained(ctx, g, "base-directory", p .. ".base-directory",
        text(ctx, g, "base-directory", p .. ".base-directory"))
    end
    if g["file-format"] ~= nil then
      local f = text(ctx, g, "file-format", p .. ".file-format"):upper()
      if not M.REPORT_FORMATS[f] then
        fail(ctx, g, "file-format", p .. ".file-format", "unknown format '%s'", g["file-format"])
      end
      r.format = f
    end
    out.reports[#out.reports + 1] = r
  end
  if #out.reports > 5 then
    fail(ctx, root, "reports", "reports", "at most 5 report groups per project, got %d",
      #out.reports)
  end
end

local ARTIFACT_KEYS = { files = true, name = true, ["discard-paths"] = true,
  ["base-directory"] = true, ["exclude-paths"] = true, ["enable-symlinks"] = true,
  ["s3-prefix"] = true, ["secondary-artifacts"] = true }

local function artifact(ctx, parent, pkey, a, p, top)
  local known = ARTIFACT_KEYS
  if not top then
    known = { files = true, name = true, ["discard-paths"] = true, ["base-directory"] = true,
      ["exclude-paths"] = true, ["enable-symlinks"] = true, ["s3-prefix"] = true }
  end
  keys(ctx, parent, pkey, a, p, known)
  if a.files == nil then
    fail(ctx, parent, pkey, p .. ".files", "required%s", top and
      " (also when only secondary artifacts are given)" or "")
  end
  local r = { files = path_list(ctx, a, "files", p .. ".files"),
    discard_paths = bool(ctx, a, "discard-paths", p .. ".discard-paths") or false,
    enable_symlinks = bool(ctx, a, "enable-symlinks", p .. ".enable-symlinks") or false,
    line = ctx.where:at(a) }
  if a.name ~= nil then
    r.name = text(ctx, a, "name", p .. ".name")
    -- A name without shell syntax is final now; one with it is checked at upload.
    local literal = not r.name:find("[$`]")
    if literal and (r.name:find("^/") or ("/" .. r.name .. "/"):find("/%.%.?/")) then
      fail(ctx, a, "name", p .. ".name", "'%s' is not a relative path inside the output", r.name)
    end
  end
  if a["s3-prefix"] ~= nil then
    r.s3_prefix = text(ctx, a, "s3-prefix", p .. ".s3-prefix")
  end
  if a["base-directory"] ~= nil then
    r.base_directory = contained(ctx, a, "base-directory", p .. ".base-directory",
      text(ctx, a, "base-directory", p .. ".base-directory"))
  end
  if a["exclude-paths"] ~= nil then
    if type(a["exclude-paths"]) == "string" then
      r.exclude_paths = { a["exclude-paths"] }
    else
      r.exclude_paths = path_list(ctx, a, "exclude-paths", p .. ".exclude-paths")
    end
  end
  if top and a["secondary-artifacts"] ~= nil then
    local sec = a["secondary-artifacts"]
    r.secondary = {}
    for _, id in ipairs(keys(ctx, a, "secondary-artifacts", sec, p .. ".secondary-artifacts")) do
      if not id:match("^[%w_-]+$") then
        fail(ctx, sec, id, p .. ".secondary-artifacts." .. id, "'%s' is not an identifier", id)
      end
      local s = artifact(ctx, sec, id, sec[id], p .. ".secondary-artifacts." .. id, false)
      s.id = id
      r.secondary[#r.secondary + 1] = s
    end
  end
  return r
end

local CACHE_KEYS = { paths = true, key = true, ["fallback-keys"] = true, action = true }

local function parse_cache(ctx, root, out)
  local c = root.cache
  if c == nil then
    return
  end
  keys(ctx, root, "cache", c, "cache", CACHE_KEYS)
  if c.paths == nil then
    fail(ctx, root, "cache", "cache.paths", "required")
  end
  out.cache = { paths = path_list(ctx, c, "paths", "cache.paths") }
  if c.key ~= nil then
    out.cache.key = text(ctx, c, "key", "cache.key")
  end
  if c["fallback-keys"] ~= nil then
    out.cache.fallback_keys = strings(ctx, c, "fallback-keys", "cache.fallback-keys", "keys")
  end
  if c.action ~= nil then
    local a = text(ctx, c, "action", "cache.action")
    if a ~= "restore" and a ~= "save" then
      fail(ctx, c, "action", "cache.action", "expected restore or save, got '%s'", a)
    end
    out.cache.action = a
  end
end

local TASK_KEYS = { identifier = true, buildspec = true, ["debug-session"] = true, env = true,
  ["ignore-failure"] = true, ["depend-on"] = true }
local TASK_ENV_KEYS = { ["compute-type"] = true, image = true, ["privileged-mode"] = true,
  type = true, variables = true, fleet = true }

local function task_env(ctx, parent, key, env, p, dynamic)
  local out = { variables = {} }
  for _, k in ipairs(keys(ctx, parent, key, env, p, TASK_ENV_KEYS)) do
    local kp = p .. "." .. k
    if k == "variables" then
      local vars = env[k]
      for _, n in ipairs(keys(ctx, env, k, vars, kp)) do
        if dynamic then
          local v = vars[n]
          if is_list(v) and v ~= yaml.null then
            out.variables[#out.variables + 1] = { name = n, values = strings(ctx, vars, n,
              kp .. "." .. n, "values") }
          else
            out.variables[#out.variables + 1] = { name = n, values = { text(ctx, vars, n,
              kp .. "." .. n) } }
          end
        else
          out.variables[#out.variables + 1] = { name = n,
            value = text(ctx, vars, n, kp .. "." .. n) }
        end
      end
    elseif k == "privileged-mode" then
      out.privileged_mode = bool(ctx, env, k, kp)
    elseif dynamic and is_list(env[k]) and env[k] ~= yaml.null then
      out[k] = strings(ctx, env, k, kp)
    else
      out[k] = text(ctx, env, k, kp)
    end
  end
  return out
end

local function parse_tasks(ctx, batch, key, p, graph)
  local list = batch[key]
  if not is_list(list) or list == yaml.null then
    fail(ctx, batch, key, p, "expected a list of tasks, got %s", kind(list))
  end
  local tasks, seen = {}, {}
  for i, t in ipairs(list) do
    local tp = string.format("%s[%d]", p, i)
    local known = TASK_KEYS
    if not graph then
      known = { identifier = true, buildspec = true, ["debug-session"] = true, env = true,
        ["ignore-failure"] = true }
    end
    keys(ctx, list, i, t, tp, known)
    if t.identifier == nil then
      fail(ctx, list, i, tp .. ".identifier", "required")
    end
    local id = text(ctx, t, "identifier", tp .. ".identifier")
    if not id:match("^[%w_]+$") then
      fail(ctx, t, "identifier", tp .. ".identifier",
        "'%s' is not an identifier (letters, digits, _)", id)
    end
    if seen[id] then
      fail(ctx, t, "identifier", tp .. ".identifier", "'%s' is used twice", id)
    end
    seen[id] = true
    local task = { identifier = id, line = line_of(ctx, list, i),
      ignore_failure = bool(ctx, t, "ignore-failure", tp .. ".ignore-failure") or false,
      debug_session = bool(ctx, t, "debug-session", tp .. ".debug-session") }
    if t.buildspec ~= nil then
      task.buildspec = contained(ctx, t, "buildspec", tp .. ".buildspec",
        text(ctx, t, "buildspec", tp .. ".buildspec"))
    end
    if t.env ~= nil then
      task.env = task_env(ctx, t, "env", t.env, tp .. ".env")
    end
    if t["depend-on"] ~= nil then
      task.depend_on = strings(ctx, t, "depend-on", tp .. ".depend-on", "identifiers")
      task.depend_lines = {}
      for j = 1, #task.depend_on do
        task.depend_lines[j] = { t["depend-on"], j }
      end
    end
    tasks[#tasks + 1] = task
  end
  if graph then
    for _, task in ipairs(tasks) do
      for j, dep in ipairs(task.depend_on or {}) do
        if not seen[dep] then
          local at = task.depend_lines[j]
          fail(ctx, at[1], at[2], p .. "." .. task.identifier .. ".depend-on",
            "no task '%s' in the graph", dep)
        end
      end
    end
    -- A cycle would wait forever: refuse it here.
    local by_id, state = {}, {}
    for _, task in ipairs(tasks) do
      by_id[task.identifier] = task
    end
    local function visit(task)
      if state[task] == 1 then
        fail(ctx, list, 1, p, "depend-on forms a cycle through '%s'", task.identifier)
      end
      if state[task] then
        return
      end
      state[task] = 1
      for _, dep in ipairs(task.depend_on or {}) do
        visit(by_id[dep])
      end
      state[task] = 2
    end
    for _, task in ipairs(tasks) do
      visit(task)
    end
  end
  return tasks
end

local function parse_batch(ctx, root, out)
  local b = root.batch
  if b == nil then
    return
  end
  local known = { ["fast-fail"] = true, ["build-list"] = true, ["build-graph"] = true,
    ["build-matrix"] = true, ["build-timeout-in-mins"] = true, ["service-role"] = true,
    ["combine-artifacts"] = true }
  keys(ctx, root, "batch", b, "batch", known)
  local batch = { fast_fail = bool(ctx, b, "fast-fail", "batch.fast-fail") or false,
    combine_artifacts = bool(ctx, b, "combine-artifacts", "batch.combine-artifacts") }
  local kinds = 0
  for _, k in ipairs({ "build-list", "build-graph", "build-matrix" }) do
    if b[k] ~= nil then
      kinds = kinds + 1
      batch.kind = k
    end
  end
  if kinds ~= 1 then
    fail(ctx, root, "batch", "batch", "needs exactly one of build-list, build-graph, "
      .. "build-matrix (got %d)", kinds)
  end
  if batch.kind == "build-matrix" then
    local m = b["build-matrix"]
    keys(ctx, b, "build-matrix", m, "batch.build-matrix", { static = true, dynamic = true })
    batch.static = { ignore_failure = false }
    if m.static ~= nil then
      local s = m.static
      keys(ctx, m, "static", s, "batch.build-matrix.static", { ["ignore-failure"] = true,
        env = true })
      batch.static.ignore_failure = bool(ctx, s, "ignore-failure",
        "batch.build-matrix.static.ignore-failure") or false
      if s.env ~= nil then
        batch.static.env = task_env(ctx, s, "env", s.env, "batch.build-matrix.static.env")
      end
    end
    batch.dynamic = { buildspecs = {}, env = { variables = {} } }
    if m.dynamic ~= nil then
      local d = m.dynamic
      keys(ctx, m, "dynamic", d, "batch.build-matrix.dynamic", { buildspec = true, env = true })
      if d.buildspec ~= nil then
        batch.dynamic.buildspecs = path_list(ctx, d, "buildspec",
          "batch.build-matrix.dynamic.buildspec")
      end
      if d.env ~= nil then
        batch.dynamic.env = task_env(ctx, d, "env", d.env, "batch.build-matrix.dynamic.env", true)
      end
    end
  else
    batch.tasks = parse_tasks(ctx, b, batch.kind, "batch." .. batch.kind,
      batch.kind == "build-graph")
  end
  out.batch = batch
end

local TOP_KEYS = { version = true, ["run-as"] = true, env = true, proxy = true, batch = true,
  phases = true, reports = true, artifacts = true, cache = true }

--- Parses buildspec text. opts.name is the file name used in messages. Returns the normalized
--- spec; raises EINPUT naming file, line and key.
function M.parse(src, opts)
  opts = opts or {}
  local name = opts.name or "buildspec.yml"
  local root, where = yaml.decode(src, { name = name })
  if root == nil then
    error(tide.error("EINPUT", where, { file = name, yaml = true,
      line = tonumber(where:match("^.-:(%d+):")) }), 0)
  end
  local ctx = setmetatable({ name = name, where = where, warnings = {} }, Ctx)
  if root == yaml.null or not is_map(root) then
    error(tide.error("EINPUT", string.format("%s:1:1: the buildspec must be a mapping, got %s",
      name, kind(root)), { file = name, line = 1 }), 0)
  end
  keys(ctx, nil, nil, root, "", TOP_KEYS)
  local out = { file = name, warnings = ctx.warnings, not_applicable = {} }
  if root.version == nil then
    error(tide.error("EINPUT", string.format("%s:1:1: version: required (0.2)", name),
      { file = name, line = 1, key = "version" }), 0)
  end
  local v = text(ctx, root, "version", "version")
  if v ~= "0.1" and v ~= "0.2" then
    fail(ctx, root, "version", "version", "expected 0.1 or 0.2, got '%s'", v)
  end
  out.version = v
  if root["run-as"] ~= nil then
    out.run_as = user_name(ctx, root, "run-as", "run-as")
  end
  if root.proxy ~= nil then
    local px = root.proxy
    keys(ctx, root, "proxy", px, "proxy", { ["upload-artifacts"] = true, logs = true })
    bool(ctx, px, "upload-artifacts", "proxy.upload-artifacts")
    bool(ctx, px, "logs", "proxy.logs")
    out.not_applicable[#out.not_applicable + 1] = "proxy"
  end
  parse_env(ctx, root, out)
  parse_phases(ctx, root, out)
  out.has_phases = root.phases ~= nil
  parse_reports(ctx, root, out)
  if root.artifacts ~= nil then
    out.artifacts = artifact(ctx, root, "artifacts", root.artifacts, "artifacts", true)
  end
  parse_cache(ctx, root, out)
  parse_batch(ctx, root, out)
  if root.phases == nil and not out.batch then
    error(tide.error("EINPUT", string.format("%s:1:1: phases: required (only a batch-only "
      .. "buildspec may omit it)", name), { file = name, line = 1, key = "phases" }), 0)
  end
  for _, n in ipairs(out.exported or {}) do
    if n:match("^AWS_") then
      ctx.warnings[#ctx.warnings + 1] = string.format(
        "%s: env.exported-variables: %s: AWS_* variables are not exportable; ignored", name, n)
    end
  end
  return out
end

return M
