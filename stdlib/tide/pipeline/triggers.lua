--- Triggers: git push filters (branches, tags, file paths; includes and excludes, excludes win)
--- and cron schedules. tide watch polls the git sources and the clock and starts executions.
local tide = require("tide")

local M = {}

local function fail(file, place, fmt, ...)
  error(tide.error("EINPUT", string.format("%s: %s: " .. fmt, file, place, ...)), 0)
end

-- Glob ------------------------------------------------------------------------------------------

--- Expands {a,b} alternatives (not nested) into a list of plain glob patterns.
function M.expand_braces(p)
  local pre, body, post = p:match("^(.-)(%b{})(.*)$")
  if not pre or (pre:sub(-1) == "\\") then
    return { p }
  end
  local out = {}
  for alt in (body:sub(2, -2) .. ","):gmatch("([^,]*),") do
    for _, rest in ipairs(M.expand_braces(post)) do
      out[#out + 1] = pre .. alt .. rest
    end
  end
  return out
end

--- Whether name matches glob pattern p (CodePipeline's rules: * within a segment, ** across /,
--- ?, [...], {a,b}, \ escapes).
function M.glob_match(p, name)
  local fs = require("tide.fs")
  for _, q in ipairs(M.expand_braces(p)) do
    if fs.match(q, name, { hidden = true }) then
      return true
    end
  end
  return false
end

--- A filter {includes=, excludes=} matches name when it matches an include (or there are no
--- includes) and no exclude.
function M.filter_match(f, name)
  for _, p in ipairs(f.excludes) do
    if M.glob_match(p, name) then
      return false
    end
  end
  if #f.includes == 0 then
    return true
  end
  for _, p in ipairs(f.includes) do
    if M.glob_match(p, name) then
      return true
    end
  end
  return false
end

local function check_filter(file, place, v)
  if v == nil then
    return nil
  end
  if type(v) == "string" then
    v = { v }
  end
  if type(v) ~= "table" then
    fail(file, place, "a filter is a list of patterns or {includes=, excludes=}")
  end
  local f = { includes = {}, excludes = {} }
  if #v > 0 then
    f.includes = v
  else
    for k in pairs(v) do
      if k ~= "includes" and k ~= "excludes" then
        fail(file, place, "unknown key '%s'", tostring(k))
      end
    end
    f.includes, f.excludes = v.includes or {}, v.excludes or {}
  end
  for _, key in ipairs({ "includes", "excludes" }) do
    if #f[key] > 8 then
      fail(file, place, "at most 8 %s patterns", key)
    end
    for i, p in ipairs(f[key]) do
      if type(p) ~= "string" or p == "" then
        fail(file, place, "%s[%d] must be a non-empty string", key, i)
      end
    end
  end
  return f
end

--- Whether a push of ref (refs/heads/x or refs/tags/x) passes trigger t; changed() returns the
--- changed paths (only called when t has a path filter).
function M.push_matches(t, ref, changed)
  local branch = ref:match("^refs/heads/(.+)$")
  local tag = ref:match("^refs/tags/(.+)$")
  if tag then
    return t.tags ~= nil and M.filter_match(t.tags, tag)
  end
  if not branch then
    return false
  end
  if t.tags and not t.branches then
    return false
  end
  if t.branches and not M.filter_match(t.branches, branch) then
    return false
  end
  if t.paths then
    for _, path in ipairs(changed()) do
      if M.filter_match(t.paths, path) then
        return true
      end
    end
    return false
  end
  return true
end

-- Cron -----------------------------------------------------------------------------------------

local FIELDS = {
  { name = "minute", min = 0, max = 59 },
  { name = "hour", min = 0, max = 23 },
  { name = "day of month", min = 1, max = 31 },
  { name = "month", min = 1, max = 12, names = { "jan", "feb", "mar", "apr", "may", "jun", "jul",
    "aug", "sep", "oct", "nov", "dec" } },
  { name = "day of week", min = 0, max = 7, names = { "sun", "mon", "tue", "wed", "thu", "fri",
    "sat" }, name_base = 0 },
}

local MACROS = { ["@hourly"] = "0 * * * *", ["@daily"] = "0 0 * * *",
  ["@midnight"] = "0 0 * * *", ["@weekly"] = "0 0 * * 0", ["@monthly"] = "0 0 1 * *",
  ["@yearly"] = "0 0 1 1 *", ["@annually"] = "0 0 1 1 *" }

local function field_value(f, s)
  local n = tonumber(s)
  if n and s:match("^%d+$") then
    return n
  end
  if f.names then
    for i, name in ipairs(f.names) do
      if s:lower() == name then
        return i - 1 + (f.name_base or 1)
      end
    end
  end
  return nil
end

--- Parses a 5-field cron expression (minute hour day-of-month month day-of-week; *, lists,
--- ranges, steps, month and day names, @daily and friends). Returns the schedule, or nil and a
--- message.
function M.cron(expr)
  if type(expr) ~= "string" then
    return nil, "a cron expression must be a string"
  end
  local text = MACROS[expr] or expr
  local parts = {}
  for p in text:gmatch("%S+") do
    parts[#parts + 1] = p
  end
  if #parts ~= 5 then
    return nil, string.format("cron '%s' needs 5 fields (minute hour day month weekday), has %d",
      expr, #parts)
  end
  local sched = { expr = expr }
  for i, f in ipairs(FIELDS) do
    local set, any = {}, parts[i] == "*" or parts[i]:match("^%*/") ~= nil
    for item in (parts[i] .. ","):gmatch("([^,]*),") do
      local range, step = item:match("^([^/]+)/(%d+)$")
      range = range or item
      step = tonumber(step) or 1
      local lo, hi
      if range == "*" then
        lo, hi = f.min, f.max
      else
        local a, b = range:match("^([^-]+)-([^-]+)$")
        if a then
          lo, hi = field_value(f, a), field_value(f, b)
        else
          lo = field_value(f, range)
          hi = item:match("/") and f.max or lo
        end
      end
      if not lo or not hi or lo < f.min or hi > f.max or lo > hi or step < 1 then
        return nil, string.format("cron '%s': bad %s '%s' (%d-%d)", expr, f.name, item, f.min,
          f.max)
      end
      for v = lo, hi, step do
        set[v] = true
      end
    end
    if i == 5 and set[7] then
      set[0] = true
    end
    sched[i] = { set = set, any = any }
  end
  return sched
end

local function day_matches(s, t)
  local dom, dow = s[3], s[5]
  local dom_ok, dow_ok = dom.set[t.day], dow.set[t.wday - 1]
  -- Vixie cron: when both are restricted, either one matching is enough.
  if not dom.any and not dow.any then
    return dom_ok or dow_ok
  end
  return dom_ok and dow_ok
end

--- The first minute strictly after time `after` (epoch seconds, local time) that the schedule
--- matches, or nil when none in the next 5 years.
function M.next_time(s, after)
  local t = os.date("*t", math.floor(after / 60) * 60 + 60)
  t.sec = 0
  local limit = after + 5 * 366 * 86400
  while true do
    local now = os.time(t)
    if now > limit then
      return nil
    end
    t = os.date("*t", now)
    if not s[4].set[t.month] then
      t.month, t.day, t.hour, t.min = t.month + 1, 1, 0, 0
    elseif not day_matches(s, t) then
      t.day, t.hour, t.min = t.day + 1, 0, 0
    elseif not s[2].set[t.hour] then
      t.hour, t.min = t.hour + 1, 0
    elseif not s[1].set[t.min] then
      t.min = t.min + 1
    else
      return now
    end
    t.isdst = nil
  end
end

-- Declaration ----------------------------------------------------------------------------------

--- Checks the triggers of a declaration; returns them normalised: {kind="push", git=, source=,
--- branches=, tags=, paths=} or {kind="schedule", cron=, schedule=}.
function M.check(file, plan, triggers)
  local out = {}
  if triggers == nil then
    return out
  end
  if type(triggers) ~= "table" or #triggers == 0 and next(triggers) ~= nil then
    fail(file, "triggers", "must be a list")
  end
  local sources = {}
  for _, a in ipairs(plan.stages[1].actions) do
    if a.kind == "source" then
      sources[a.name] = a
    end
  end
  for i, t in ipairs(triggers) do
    local place = string.format("triggers[%d]", i)
    if type(t) ~= "table" then
      fail(file, place, "a trigger must be a table")
    end
    for k in pairs(t) do
      local known = { git = 1, source = 1, branches = 1, tags = 1, paths = 1, schedule = 1,
        credentials = 1 }
      if not known[k] then
        fail(file, place, "unknown key '%s'", tostring(k))
      end
    end
    if t.schedule then
      if t.git or t.source or t.branches or t.tags or t.paths then
        fail(file, place, "a schedule trigger takes only 'schedule'")
      end
      local s, err = M.cron(t.schedule)
      if not s then
        fail(file, place, "%s", err)
      end
      out[i] = { kind = "schedule", schedule = t.schedule, cron = s }
    else
      local src
      if t.source then
        src = sources[t.source] or fail(file, place, "no source action named '%s' in the first "
          .. "stage", tostring(t.source))
      elseif t.git then
        for _, a in pairs(sources) do
          if a.config.git == t.git then
            src = a
          end
        end
        -- The revision a push fires with goes to the source action reading that repository;
        -- without one the execution would check out something else.
        if not src then
          fail(file, place, "no source action of the first stage reads '%s': a push trigger "
            .. "needs one (or name it with 'source')", tostring(t.git))
        end
      else
        fail(file, place, "a trigger needs 'git' (or 'source') or 'schedule'")
      end
      if t.git and type(t.git) ~= "string" then
        fail(file, place, "'git' must be a string")
      end
      if t.credentials ~= nil and type(t.credentials) ~= "string" then
        fail(file, place, "'credentials' must be the id of a secret in the store")
      end
      out[i] = { kind = "push", git = t.git or src.config.git, source = src and src.name,
        credentials = t.credentials or src and src.config.credentials,
        branches = check_filter(file, place .. ".branches", t.branches),
        tags = check_filter(file, place .. ".tags", t.tags),
        paths = check_filter(file, place .. ".paths", t.paths) }
    end
  end
  return out
end

-- tide watch ----------------------------------------------------------------------------------

--- A bare clone of url kept under the home (one per URL), fetched again on each call: what
--- tide watch reads changed paths from, and where a commit id is looked up. Returns the repo.
function M.mirror(git, url, credentials)
  local fs = require("tide.fs")
  local h = 0xcbf29ce484222325
  for i = 1, #url do
    h = (h ~ url:byte(i)) * 0x100000001b3
  end
  local root = require("tide._store").home() .. "/pipelines/mirrors"
  local dir = string.format("%s/%016x", root, h)
  local ok, repo = pcall(git.open, dir)
  if ok and repo then
    local fetched, err = pcall(repo.fetch, repo, { credentials = credentials })
    if fetched then
      return repo
    end
    print(string.format("cannot fetch '%s' into its mirror (%s): cloning it again",
      git.redact_url(url), type(err) == "table" and err.message or tostring(err)))
  end
  fs.rm_r(dir)
  fs.mkdir_p(root)
  -- Cloned beside, then renamed: a tide killed mid-clone leaves no half mirror in place.
  local tmp = string.format("%s.%d", dir, math.floor(tide.now() * 1e6))
  local cloned, msg = pcall(git.clone, url, tmp, { bare = true, credentials = credentials })
  if not cloned or not msg then
    fs.rm_r(tmp)
    error(tide.error("EGIT", string.format("cannot clone '%s': %s", git.redact_url(url),
      type(msg) == "table" and msg.message or tostring(msg))), 0)
  end
  local moved, err = os.rename(tmp, dir)
  if not moved then
    fs.rm_r(tmp)
    error(tide.error("EGIT", "cannot keep the mirror of '" .. url .. "': " .. tostring(err)), 0)
  end
  return git.open(dir)
end

--- The paths changed between revisions old and new of url (read from its mirror).
local function changed_paths(git, url, old, new, credentials)
  local repo = M.mirror(git, url, credentials)
  return repo:changed_paths(old, new) or {}
end

--- Polls plan's git sources and schedules every opts.interval seconds (once with opts.once)
--- and starts an execution, as a child `tide run --trigger ID`, for each push or tick that
--- matches. Each firing is recorded with its revision in pipeline_triggers.
function M.watch(plan, opts)
  local state = require("tide.pipeline.state")
  local proc = require("tide.proc")
  local d = state.db()
  local exe = require("tide.uv").exepath()
  local home = require("tide._store").home()
  local children = {}
  local function set_head(url, ref, rev)
    d.exec("INSERT OR REPLACE INTO pipeline_heads (pipeline, url, ref, revision) VALUES "
      .. "(?, ?, ?, ?)", plan.name, url, ref, rev)
  end
  --- Records the firing and the head that caused it in one transaction: a tide killed after it
  --- has the trigger to start; one killed before it sees the push again.
  local function fire(kind, source, ref, revision, head_url, head_ref, head_rev)
    local id = d.tx(function()
      local _, rowid = d.exec("INSERT INTO pipeline_triggers (pipeline, kind, source, ref, "
        .. "revision, fired_us) VALUES (?, ?, ?, ?, ?, ?)", plan.name, kind, source, ref, revision,
        state.now_us())
      set_head(head_url, head_ref, head_rev)
      return rowid
    end)
    print(string.format("%s: trigger %d: %s %s %s", plan.name, id, kind, ref or "",
      revision or ""))
    children[#children + 1] = tide.spawn("trigger " .. id, function()
      return proc.run({ exe, "--home", home, "--plain", "run", plan.file, "--trigger",
        tostring(id), on_line = function(line) print(line) end })
    end)
  end
  local function head(url, ref)
    local r = d.row("SELECT revision FROM pipeline_heads WHERE pipeline = ? AND url = ? AND "
      .. "ref = ?", plan.name, url, ref)
    return r and r.revision
  end
  local by_url = {}
  for _, t in ipairs(plan.triggers) do
    if t.kind == "push" then
      by_url[t.git] = by_url[t.git] or {}
      table.insert(by_url[t.git], t)
    end
  end
  local rollbacks
  while true do
    -- Rollbacks decided by executions whose tide died before starting them.
    local idle = not rollbacks or rollbacks:status() == "done" or rollbacks:status() == "failed"
    if idle and d.row("SELECT 1 AS x FROM pipeline_rollbacks WHERE pipeline = ? AND execution "
      .. "IS NULL LIMIT 1", plan.name) then
      if rollbacks then
        pcall(rollbacks.wait, rollbacks)
      end
      rollbacks = tide.spawn("rollbacks", require("tide.pipeline.engine").start_pending, plan)
    end
    for url, triggers in pairs(by_url) do
      local ok, git = pcall(require, "tide.git")
      if not ok then
        error(tide.error("EINPUT", "tide watch needs tide.git for push triggers: " .. git), 0)
      end
      local read, heads = pcall(git.ls_remote, url, { credentials = triggers[1].credentials })
      if not read then
        -- A remote that is down for a moment must not end the watch: say so, poll again later.
        print(string.format("%s: cannot read '%s': %s", plan.name, url,
          type(heads) == "table" and heads.message or tostring(heads)))
        heads = {}
      end
      local refs = {}
      for ref in pairs(heads) do
        if ref:match("^refs/heads/") or ref:match("^refs/tags/") then
          refs[#refs + 1] = ref
        end
      end
      table.sort(refs)
      -- The first look at a repository is the baseline; after it, a new ref is a push too,
      -- its changes counted from the default branch.
      local known = d.row("SELECT 1 AS x FROM pipeline_heads WHERE pipeline = ? AND url = ? "
        .. "LIMIT 1", plan.name, url) ~= nil
      local base = head(url, "HEAD") or heads.HEAD
      if heads.HEAD then
        set_head(url, "HEAD", heads.HEAD)
      end
      for _, ref in ipairs(refs) do
        local rev, old = heads[ref], head(url, ref)
        if old ~= rev then
          local fired = false
          if known then
            local paths
            local function changed()
              paths = paths or changed_paths(git, url, old or base or rev, rev,
                triggers[1].credentials)
              return paths
            end
            for _, t in ipairs(triggers) do
              local matched, why = pcall(M.push_matches, t, ref, changed)
              if not matched then
                print(string.format("%s: %s", plan.name, tostring(why)))
              elseif why then
                fire("push", t.source, ref, rev, url, ref, rev)
                fired = true
                break
              end
            end
          end
          if not fired then
            set_head(url, ref, rev)
          end
        end
      end
    end
    for _, t in ipairs(plan.triggers) do
      if t.kind == "schedule" then
        local now = tide.now()
        local due = tonumber(head("schedule", t.schedule))
        local next_due = tostring(M.next_time(t.cron, now))
        if due and now >= due then
          fire("schedule", nil, t.schedule, os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(due)),
            "schedule", t.schedule, next_due)
        elseif not due then
          set_head("schedule", t.schedule, next_due)
        end
      end
    end
    if opts.once then
      break
    end
    tide.sleep(opts.interval or 10)
  end
  for _, c in ipairs(children) do
    pcall(c.wait, c)
  end
  if rollbacks then
    pcall(rollbacks.wait, rollbacks)
  end
end

return M
