--- The pipeline declaration: loading a script, checking every key and type, and the rules of
--- CodePipeline's structure (names, runOrder, artifacts, namespaces, variable references).
--- Every error names the file and the place in the table, and is raised before anything runs.
local tide = require("tide")
local variables = require("tide.pipeline.variables")

local M = {}

M.BASE_KINDS = { "source", "build", "approval", "run" }
local CATEGORY = { source = "Source", build = "Build", approval = "Approval", run = "Invoke" }
M.CATEGORY = CATEGORY

-- Default action timeouts in seconds, as CodePipeline's (custom actions: 24 h).
M.TIMEOUT = { source = 3600, build = 8 * 3600, approval = 7 * 86400, run = 86400 }

-- The output variables of a git source action (CodeCommit's).
M.SOURCE_VARIABLES = { AuthorDate = true, BranchName = true, CommitId = true,
  CommitMessage = true, CommitterDate = true, RepositoryName = true }

local MODES = { SUPERSEDED = true, QUEUED = true, PARALLEL = true }

local function fail(file, place, fmt, ...)
  local where = file
  if place and place ~= "" then
    where = where .. ": " .. place
  end
  error(tide.error("EINPUT", where .. ": " .. string.format(fmt, ...)), 0)
end

--- Seconds from a number or "90s", "30m", "24h", "7d"; nil for anything else.
function M.seconds(v)
  if type(v) == "number" and v > 0 then
    return v
  end
  if type(v) ~= "string" then
    return nil
  end
  local n, unit = v:match("^(%d+%.?%d*)([smhd]?)$")
  n = tonumber(n)
  if not n or n <= 0 then
    return nil
  end
  return n * ({ s = 1, m = 60, h = 3600, d = 86400, [""] = 1 })[unit]
end

local function check_keys(file, place, t, allowed)
  for k in pairs(t) do
    if type(k) ~= "string" or allowed[k] == nil then
      fail(file, place, "unknown key '%s'", tostring(k))
    end
  end
  for k, want in pairs(allowed) do
    local v = t[k]
    if v ~= nil and want ~= "any" then
      local ok = false
      for w in want:gmatch("[^|]+") do
        if type(v) == w then
          ok = true
        end
      end
      if not ok then
        fail(file, place, "'%s' must be a %s, not a %s", k, want:gsub("|", " or "), type(v))
      end
    end
  end
end

local function is_list(t)
  if type(t) ~= "table" then
    return false
  end
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  return n == #t
end

--- A string or a list of strings, as a list.
local function names(file, place, key, v)
  if v == nil then
    return {}
  end
  if type(v) == "string" then
    return { v }
  end
  if not is_list(v) then
    fail(file, place, "'%s' must be a string or a list of strings", key)
  end
  for i, s in ipairs(v) do
    if type(s) ~= "string" then
      fail(file, place, "'%s'[%d] must be a string", key, i)
    end
  end
  return v
end

local function check_name(file, place, what, s, pattern, max)
  if type(s) ~= "string" or s == "" then
    fail(file, place, "%s must be a non-empty string", what)
  end
  if #s > max or not s:match("^" .. pattern .. "+$") then
    fail(file, place, "%s '%s' must be at most %d characters of %s", what, s, max,
      pattern:gsub("%%", ""))
  end
end

local NAME = "[%w%.@_%-]"
local ARTIFACT = "[%w_%-]"

local ACTION_KEYS = {
  name = "string", run_order = "number", input = "string|table", output = "string|table",
  namespace = "string", timeout = "number|string", description = "string",
  source = "table", build = "string|table", approval = "table", run = "function",
  env = "table",
}
local SOURCE_KEYS = { git = "string", branch = "string", revision = "string", depth = "number",
  credentials = "string" }
local BUILD_KEYS = { buildspec = "string", env = "table", project = "string",
  sandbox = "boolean" }
local APPROVAL_KEYS = { timeout = "number|string", summary = "string", link = "string",
  custom_data = "string" }
local CONDITION_KEYS = { result = "string", rules = "table", retry_mode = "string",
  attempts = "number" }
local RULE_KEYS = { variable = "string", operator = "string", value = "string" }
local RESULTS = {
  before_entry = { FAIL = true, SKIP = true },
  on_success = { ROLLBACK = true, FAIL = true },
  on_failure = { ROLLBACK = true, RETRY = true, FAIL = true, SKIP = true },
}
M.OPERATORS = { EQ = true, NE = true, CONTAINS = true, MATCHES = true }

--- Expands a user-defined kind into a base kind: kinds[k](config, action) returns a table with
--- exactly one base kind key; the action's own keys (name, input, output...) are kept.
local function expand_kind(file, place, action, kinds)
  local found
  for k in pairs(action) do
    if type(k) == "string" and kinds[k] then
      if found then
        fail(file, place, "two kinds given: '%s' and '%s'", found, k)
      end
      found = k
    end
  end
  if not found then
    return action
  end
  local made = kinds[found](action[found], action)
  if type(made) ~= "table" then
    fail(file, place, "kind '%s' must return a table with one of source, build, approval, run",
      found)
  end
  local out = {}
  for k, v in pairs(action) do
    if k ~= found then
      out[k] = v
    end
  end
  for k, v in pairs(made) do
    if out[k] ~= nil and k ~= "name" then
      fail(file, place, "kind '%s' returned key '%s' that the action already sets", found, k)
    end
    out[k] = v
  end
  out.user_kind = found
  return out
end

local function check_condition(file, place, key, c)
  if type(c) ~= "table" then
    fail(file, place, "'%s' must be a table", key)
  end
  check_keys(file, place .. "." .. key, c, CONDITION_KEYS)
  if not c.result or not RESULTS[key][c.result] then
    local allowed = {}
    for r in pairs(RESULTS[key]) do
      allowed[#allowed + 1] = r
    end
    table.sort(allowed)
    fail(file, place .. "." .. key, "result must be one of %s, not '%s'",
      table.concat(allowed, ", "), tostring(c.result))
  end
  if c.retry_mode and c.retry_mode ~= "FAILED_ACTIONS" and c.retry_mode ~= "ALL_ACTIONS" then
    fail(file, place .. "." .. key, "retry_mode must be FAILED_ACTIONS or ALL_ACTIONS")
  end
  if c.attempts and (c.attempts < 1 or c.attempts ~= math.floor(c.attempts)) then
    fail(file, place .. "." .. key, "attempts must be a positive integer")
  end
  if (key == "before_entry" or key == "on_success") and not c.rules then
    fail(file, place .. "." .. key, "rules are required")
  end
  for i, r in ipairs(c.rules or {}) do
    local rp = string.format("%s.%s.rules[%d]", place, key, i)
    if type(r) == "table" then
      check_keys(file, rp, r, RULE_KEYS)
      if not r.variable or not r.value then
        fail(file, rp, "a variable rule needs 'variable' and 'value'")
      end
      if r.operator and not M.OPERATORS[r.operator] then
        fail(file, rp, "operator must be EQ, NE, CONTAINS or MATCHES")
      end
    elseif type(r) ~= "function" then
      fail(file, rp, "a rule is a function or a {variable=, operator=, value=} table")
    end
  end
  if c.rules and not is_list(c.rules) then
    fail(file, place .. "." .. key, "rules must be a list")
  end
end

--- Configuration values are at most 1000 characters, as CodePipeline's.
local function check_values(file, place, key, v)
  if type(v) == "string" and #v > 1000 then
    fail(file, place .. "." .. key, "a value is at most 1000 characters, not %d", #v)
  elseif type(v) == "table" then
    for k, x in pairs(v) do
      check_values(file, place, key .. "." .. tostring(k), x)
    end
  end
end

local function check_action(file, place, a, kinds)
  if type(a) ~= "table" then
    fail(file, place, "an action must be a table")
  end
  a = expand_kind(file, place, a, kinds)
  local allowed = ACTION_KEYS
  if a.user_kind then
    allowed = setmetatable({ user_kind = "string" }, { __index = ACTION_KEYS })
    for k, v in pairs(ACTION_KEYS) do
      allowed[k] = v
    end
  end
  check_keys(file, place, a, allowed)
  check_name(file, place, "action name", a.name, NAME, 100)
  local kind
  for _, k in ipairs(M.BASE_KINDS) do
    if a[k] ~= nil then
      if kind then
        fail(file, place, "two kinds given: '%s' and '%s'", kind, k)
      end
      kind = k
    end
  end
  if not kind then
    fail(file, place, "needs one of source, build, approval, run (or a kind of 'kinds')")
  end
  local run_order = a.run_order or 1
  if run_order ~= math.floor(run_order) or run_order < 1 then
    fail(file, place, "run_order must be a positive integer, not %s", tostring(a.run_order))
  end
  local timeout = M.TIMEOUT[kind]
  if a.timeout ~= nil then
    timeout = M.seconds(a.timeout) or fail(file, place, "timeout '%s' is not a duration "
      .. "(seconds, or '30m', '24h', '7d')", tostring(a.timeout))
  end
  local out = {
    name = a.name, kind = kind, category = CATEGORY[kind], user_kind = a.user_kind,
    run_order = math.tointeger(run_order), namespace = a.namespace, timeout = timeout,
    inputs = names(file, place, "input", a.input), outputs = names(file, place, "output", a.output),
    env = a.env, description = a.description, place = place,
  }
  for i, n in ipairs(out.inputs) do
    check_name(file, place, "input[" .. i .. "]", n, ARTIFACT, 100)
  end
  for i, n in ipairs(out.outputs) do
    check_name(file, place, "output[" .. i .. "]", n, ARTIFACT, 100)
  end
  if a.namespace then
    check_name(file, place, "namespace", a.namespace, "[%w@_%-]", 100)
  end
  if kind == "source" then
    check_keys(file, place .. ".source", a.source, SOURCE_KEYS)
    if not a.source.git then
      fail(file, place .. ".source", "'git' (the repository URL or path) is required")
    end
    if a.source.branch and a.source.revision then
      fail(file, place .. ".source", "give 'branch' or 'revision', not both")
    end
    if #out.inputs > 0 then
      fail(file, place, "a source action has no input artifacts")
    end
    if #out.outputs ~= 1 then
      fail(file, place, "a source action has exactly one output artifact")
    end
    out.config = a.source
  elseif kind == "build" then
    local b = a.build
    if type(b) == "string" then
      b = { buildspec = b }
    end
    check_keys(file, place .. ".build", b, BUILD_KEYS)
    if #out.inputs < 1 or #out.inputs > 5 then
      fail(file, place, "a build action takes 1 to 5 input artifacts")
    end
    if #out.outputs > 5 then
      fail(file, place, "a build action makes at most 5 output artifacts")
    end
    out.config = b
  elseif kind == "approval" then
    check_keys(file, place .. ".approval", a.approval, APPROVAL_KEYS)
    if #out.inputs > 0 or #out.outputs > 0 then
      fail(file, place, "an approval action has no artifacts")
    end
    if a.approval.timeout ~= nil then
      out.timeout = M.seconds(a.approval.timeout) or fail(file, place .. ".approval",
        "timeout '%s' is not a duration", tostring(a.approval.timeout))
    end
    out.config = a.approval
  else
    if #out.inputs > 5 or #out.outputs > 5 then
      fail(file, place, "an invoke action takes at most 5 input and 5 output artifacts")
    end
    out.fn = a.run
    out.config = {}
  end
  check_values(file, place, kind, out.config)
  for k, v in pairs(a.env or {}) do
    if type(k) ~= "string" or type(v) ~= "string" then
      fail(file, place .. ".env", "'%s' must be a string, not a %s", tostring(k), type(v))
    end
    if #v > 1000 then
      fail(file, place .. ".env." .. k, "a value is at most 1000 characters, not %d", #v)
    end
  end
  return out
end

--- Every #{ns.var} in the strings of v (recursively), as {ns, var, text} lists.
local function refs_in(v, out)
  out = out or {}
  if type(v) == "string" then
    for _, r in ipairs(variables.refs(v)) do
      out[#out + 1] = r
    end
  elseif type(v) == "table" then
    for k, x in pairs(v) do
      refs_in(k, out)
      refs_in(x, out)
    end
  end
  return out
end

--- Checks the declaration decl (the table a pipeline script returned) read from file; returns
--- the plan: a normalised copy the engine runs from. Raises EINPUT naming the place.
function M.validate(decl, file)
  file = file or "pipeline"
  if type(decl) ~= "table" then
    fail(file, nil, "a pipeline script must return a table, not a %s", type(decl))
  end
  check_keys(file, "", decl, { name = "string", description = "string", mode = "string",
    variables = "table", triggers = "table", stages = "table", kinds = "table" })
  check_name(file, "", "pipeline name", decl.name, NAME, 100)
  local mode = decl.mode or "SUPERSEDED"
  if not MODES[mode] then
    fail(file, "", "mode must be SUPERSEDED, QUEUED or PARALLEL, not '%s'", mode)
  end
  local plan = { name = decl.name, mode = mode, file = file, description = decl.description,
    variables = {}, stages = {}, triggers = decl.triggers or {} }
  for k, v in pairs(decl.variables or {}) do
    local place = "variables." .. tostring(k)
    if type(k) ~= "string" or not k:match("^[%w@_%-]+$") or #k > 128 then
      fail(file, place, "a variable name is up to 128 characters of A-Za-z0-9@_-")
    end
    if type(v) == "string" then
      v = { default = v }
    end
    if type(v) ~= "table" then
      fail(file, place, "must be a default value or a {default=, description=} table")
    end
    check_keys(file, place, v, { default = "string", description = "string" })
    if v.default == "" then
      fail(file, place, "the default value must not be empty")
    end
    plan.variables[k] = { default = v.default, description = v.description }
  end
  local kinds = decl.kinds or {}
  for k, fn in pairs(kinds) do
    if type(k) ~= "string" or type(fn) ~= "function" then
      fail(file, "kinds", "each kind is a name and a function(config, action)")
    end
    if CATEGORY[k] or ACTION_KEYS[k] then
      fail(file, "kinds." .. k, "'%s' is already an action key", k)
    end
  end
  if not is_list(decl.stages) or #decl.stages < 1 then
    fail(file, "stages", "a pipeline needs a list of at least one stage")
  end
  if #decl.stages > 50 then
    fail(file, "stages", "at most 50 stages")
  end
  local stage_names, produced, namespaces = {}, {}, {}
  local all = {}
  for si, s in ipairs(decl.stages) do
    local place = string.format("stages[%d]", si)
    if type(s) ~= "table" then
      fail(file, place, "a stage must be a table")
    end
    check_keys(file, place, s, { name = "string", actions = "table", before_entry = "table",
      on_success = "table", on_failure = "table", description = "string" })
    check_name(file, place, "stage name", s.name, NAME, 100)
    place = string.format("stages[%d] '%s'", si, s.name)
    if stage_names[s.name] then
      fail(file, place, "duplicate stage name '%s'", s.name)
    end
    stage_names[s.name] = true
    for _, key in ipairs({ "before_entry", "on_success", "on_failure" }) do
      if s[key] then
        check_condition(file, place, key, s[key])
        if mode == "PARALLEL" and s[key].result == "ROLLBACK" then
          fail(file, place .. "." .. key, "a PARALLEL pipeline cannot roll back: result "
            .. "ROLLBACK is refused")
        end
      end
    end
    if not is_list(s.actions) or #s.actions < 1 or #s.actions > 50 then
      fail(file, place, "a stage needs a list of 1 to 50 actions")
    end
    local stage = { name = s.name, index = si, actions = {}, before_entry = s.before_entry,
      on_success = s.on_success, on_failure = s.on_failure, place = place }
    local action_names = {}
    for ai, raw in ipairs(s.actions) do
      local aplace = string.format("%s actions[%d]", place, ai)
      if type(raw) == "table" and type(raw.name) == "string" then
        aplace = string.format("%s actions[%d] '%s'", place, ai, raw.name)
      end
      local a = check_action(file, aplace, raw, kinds)
      if action_names[a.name] then
        fail(file, aplace, "duplicate action name '%s' in stage '%s'", a.name, s.name)
      end
      action_names[a.name] = true
      a.stage, a.stage_index, a.id = s.name, si, s.name .. "/" .. a.name
      if a.kind == "source" and si ~= 1 then
        fail(file, aplace, "source actions belong to the first stage only")
      end
      stage.actions[#stage.actions + 1] = a
      all[#all + 1] = a
    end
    if si == 1 then
      local sources = 0
      for _, a in ipairs(stage.actions) do
        sources = sources + (a.kind == "source" and 1 or 0)
      end
      if sources > 0 and sources ~= #stage.actions then
        fail(file, place, "a stage with source actions holds only source actions")
      end
    end
    plan.stages[si] = stage
  end
  if #plan.stages < 2 and plan.stages[1].actions[1].kind == "source" then
    fail(file, "stages", "a pipeline with a source stage needs at least one more stage")
  end
  -- Outputs and namespaces: unique across the pipeline.
  for _, a in ipairs(all) do
    for _, o in ipairs(a.outputs) do
      if produced[o] then
        fail(file, a.place, "output artifact '%s' is already produced by %s", o, produced[o].id)
      end
      produced[o] = a
    end
    if a.namespace then
      if namespaces[a.namespace] then
        fail(file, a.place, "namespace '%s' is already used by %s", a.namespace,
          namespaces[a.namespace].id)
      end
      if a.namespace == "codepipeline" or a.namespace == "variables" then
        fail(file, a.place, "namespace '%s' is reserved", a.namespace)
      end
      namespaces[a.namespace] = a
    end
  end
  for ns, a in pairs(namespaces) do
    if produced[ns] then
      fail(file, a.place, "namespace '%s' clashes with an artifact of the same name", ns)
    end
  end
  local function before(p, c) -- p runs strictly before c
    return p.stage_index < c.stage_index or
      (p.stage_index == c.stage_index and p.run_order < c.run_order)
  end
  -- Inputs: produced by an action that runs strictly earlier; a loop is reported as a cycle.
  local function depends(a, target, seen)
    if a == target then
      return { a.id }
    end
    if seen[a] then
      return nil
    end
    seen[a] = true
    for _, i in ipairs(a.inputs) do
      local p = produced[i]
      if p then
        local path = depends(p, target, seen)
        if path then
          table.insert(path, 1, a.id)
          return path
        end
      end
    end
    return nil
  end
  for _, a in ipairs(all) do
    for _, i in ipairs(a.inputs) do
      local p = produced[i]
      if not p then
        fail(file, a.place, "input artifact '%s' is not produced by any action", i)
      end
      if not before(p, a) then
        local path = p ~= a and depends(p, a, {})
        if p == a then
          fail(file, a.place, "cycle in artifacts: %s consumes '%s', its own output", a.id, i)
        elseif path then
          table.insert(path, 1, a.id)
          fail(file, a.place, "cycle in artifacts: %s", table.concat(path, " -> "))
        end
        fail(file, a.place, "artifact '%s' is consumed before it is produced (by %s, which "
          .. "does not run earlier)", i, p.id)
      end
    end
  end
  -- Variable references: a namespace of an action that runs strictly earlier.
  local function check_refs(place, v, consumer, stage_limit)
    for _, r in ipairs(refs_in(v)) do
      if r.ns == "codepipeline" then
        if not variables.CODEPIPELINE[r.var] then
          fail(file, place, "unknown variable #{%s.%s}", r.ns, r.var)
        end
      elseif r.ns == "variables" then
        if not plan.variables[r.var] then
          fail(file, place, "unknown variable #{%s.%s} (not in the pipeline's variables)", r.ns,
            r.var)
        end
      else
        local p = namespaces[r.ns]
        if not p then
          fail(file, place, "unknown variable #{%s.%s}: no action has namespace '%s'", r.ns, r.var,
            r.ns)
        end
        local ok
        if consumer then
          ok = before(p, consumer)
        else
          ok = p.stage_index < stage_limit
        end
        if not ok then
          fail(file, place, "variable #{%s.%s} is used before %s, which produces it, has run",
            r.ns, r.var, p.id)
        end
        if p.kind == "source" and not M.SOURCE_VARIABLES[r.var] then
          fail(file, place, "unknown variable #{%s.%s}: a source action exports %s", r.ns, r.var,
            "AuthorDate, BranchName, CommitId, CommitMessage, CommitterDate, RepositoryName")
        end
      end
    end
  end
  for _, a in ipairs(all) do
    check_refs(a.place, { a.config, a.env }, a)
  end
  for _, s in ipairs(plan.stages) do
    check_refs(s.place .. ".before_entry", s.before_entry and s.before_entry.rules, nil, s.index)
    -- Conditions after the stage may read the stage's own outputs.
    check_refs(s.place .. ".on_success", s.on_success and s.on_success.rules, nil, s.index + 1)
    check_refs(s.place .. ".on_failure", s.on_failure and s.on_failure.rules, nil, s.index + 1)
  end
  -- Groups by runOrder, ascending; gaps allowed.
  for _, s in ipairs(plan.stages) do
    local by = {}
    for _, a in ipairs(s.actions) do
      by[a.run_order] = by[a.run_order] or {}
      table.insert(by[a.run_order], a)
    end
    local orders = {}
    for o in pairs(by) do
      orders[#orders + 1] = o
    end
    table.sort(orders)
    s.groups = {}
    for _, o in ipairs(orders) do
      s.groups[#s.groups + 1] = by[o]
    end
  end
  plan.triggers = require("tide.pipeline.triggers").check(file, plan, decl.triggers)
  plan.structure = M.digest(plan)
  return plan
end

--- A digest of the structure (stages, actions, kinds, artifacts, order), to refuse a retry
--- after the pipeline changed.
function M.digest(plan)
  local parts = { plan.name, plan.mode }
  for _, s in ipairs(plan.stages) do
    parts[#parts + 1] = "S:" .. s.name
    for _, a in ipairs(s.actions) do
      parts[#parts + 1] = table.concat({ "A", a.name, a.kind, a.run_order,
        table.concat(a.inputs, ","), table.concat(a.outputs, ","), a.namespace or "" }, ":")
    end
  end
  local s = table.concat(parts, "\n")
  -- FNV-1a, 64-bit: a change detector, not a security boundary.
  local h = 0xcbf29ce484222325
  for i = 1, #s do
    h = (h ~ s:byte(i)) * 0x100000001b3
  end
  return string.format("%016x", h)
end

--- Loads a pipeline script: runs its chunk (in the calling task) and validates what it returns.
--- Returns plan, or nil when the script does not return a table (a plain script).
function M.load(file, chunk)
  if not chunk then
    local err
    chunk, err = loadfile(file)
    if not chunk then
      error(tide.error("EINPUT", err), 0)
    end
  end
  local decl = chunk()
  return M.validate(decl, file)
end

return M
