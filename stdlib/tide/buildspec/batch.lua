--- tide.buildspec.batch: batch builds. build-list runs every task, build-graph starts a task
--- when all it depends on have finished (a failed dependency, unless ignore-failure, keeps its
--- dependants from running), build-matrix runs one build per element of the product of
--- buildspecs x variable values x images x compute types. At most `parallel` builds run at a
--- time. fast-fail stops the running builds (STOPPED) and starts no more once one fails.
local tide = require("tide")

local M = {}

--- The member builds of a batch, in order: {identifier, buildspec, variables = {name=value},
--- ignore_failure, depend_on, env (recorded, not applied)}.
function M.tasks(spec)
  local b = spec.batch
  local out = {}
  if b.tasks then
    for _, t in ipairs(b.tasks) do
      local vars = {}
      for _, v in ipairs(t.env and t.env.variables or {}) do
        vars[v.name] = v.value
      end
      out[#out + 1] = { identifier = t.identifier, buildspec = t.buildspec, variables = vars,
        ignore_failure = t.ignore_failure, depend_on = t.depend_on or {}, env = t.env }
    end
    return out
  end
  local dyn = b.dynamic
  local axes = {}
  local specs = #dyn.buildspecs > 0 and dyn.buildspecs or { false }
  axes[#axes + 1] = { key = "buildspec", values = specs }
  for _, k in ipairs({ "image", "compute-type" }) do
    local v = dyn.env[k]
    if v ~= nil then
      axes[#axes + 1] = { key = k, values = type(v) == "table" and v or { v } }
    end
  end
  for _, v in ipairs(dyn.env.variables) do
    axes[#axes + 1] = { key = "var", name = v.name, values = v.values }
  end
  local static_vars = {}
  for _, v in ipairs(b.static.env and b.static.env.variables or {}) do
    static_vars[v.name] = v.value
  end
  local function walk(i, acc)
    if i > #axes then
      local vars = {}
      for k, v in pairs(static_vars) do
        vars[k] = v
      end
      local t = { identifier = "build" .. (#out + 1), variables = vars, depend_on = {},
        ignore_failure = b.static.ignore_failure, env = { image = acc.image,
          ["compute-type"] = acc["compute-type"] } }
      for _, a in ipairs(acc) do
        vars[a[1]] = a[2]
      end
      t.buildspec = acc.buildspec or nil
      out[#out + 1] = t
      return
    end
    local ax = axes[i]
    for _, v in ipairs(ax.values) do
      local nacc = { buildspec = acc.buildspec, image = acc.image,
        ["compute-type"] = acc["compute-type"] }
      for j, a in ipairs(acc) do
        nacc[j] = a
      end
      if ax.key == "var" then
        nacc[#nacc + 1] = { ax.name, v }
      else
        nacc[ax.key] = v
      end
      walk(i + 1, nacc)
    end
  end
  walk(1, {})
  return out
end

--- Runs the batch of spec. run_build(opts) runs one member (tide.buildspec.run). o: the options
--- of the batch run (src, project, env, output, parallel, ...). Returns the batch result.
function M.run(spec, o, run_build)
  local records = require("tide.buildspec.records")
  local tasks = M.tasks(spec)
  local batch = { id = (o.project or "build") .. ":batch-" .. tide.random_hex(8),
    project = o.project, kind = spec.batch.kind, fast_fail = spec.batch.fast_fail,
    started = tide.now(), builds = {}, status = "IN_PROGRESS" }
  records.batch_start(batch)
  local limit = o.parallel or 4
  local by_id, state = {}, {}
  for _, t in ipairs(tasks) do
    by_id[t.identifier] = t
    state[t.identifier] = "pending"
  end
  local running, handles = 0, {}
  local failed, stopping = false, false

  local function member_opts(t)
    local m = {}
    for k, v in pairs(o) do
      m[k] = v
    end
    m.batch, m.parallel, m.in_batch = nil, nil, true
    m.env = {}
    for k, v in pairs(t.variables) do
      m.env[k] = v
    end
    for k, v in pairs(o.env or {}) do
      m.env[k] = v
    end
    m.batch_identifier = t.identifier
    m.batch_id = batch.id
    if t.buildspec then
      m.file, m.file_display, m.text = t.buildspec, t.buildspec, nil
    end
    if o.output then
      m.output = o.output .. "/" .. t.identifier
    end
    local echo = o.on_line
    m.on_line = function(line, phase)
      if echo then
        echo("[" .. t.identifier .. "] " .. line, phase)
      elseif not o.quiet then
        io.stdout:write("[", t.identifier, "] ", line, "\n")
      end
    end
    return m
  end

  local function ready(t)
    for _, d in ipairs(t.depend_on) do
      local s = state[d]
      if s == "pending" or s == "running" then
        return false
      end
    end
    return true
  end

  local function blocked(t)
    for _, d in ipairs(t.depend_on) do
      local s = state[d]
      if (s == "failed" and not by_id[d].ignore_failure) or s == "not_run" then
        return d
      end
    end
  end

  local results = {}
  local ok, err = pcall(function()
    while true do
      -- Start what may start.
      for _, t in ipairs(tasks) do
        if state[t.identifier] == "pending" and ready(t) then
          local dep = blocked(t)
          if dep or stopping then
            state[t.identifier] = "not_run"
            results[t.identifier] = { identifier = t.identifier, status = "NOT_RUN",
              reason = dep and ("dependency '" .. dep .. "' failed") or "fast-fail" }
          elseif running < limit then
            state[t.identifier] = "running"
            running = running + 1
            local h = tide.spawn("batch " .. t.identifier, function()
              local rok, r = pcall(run_build, member_opts(t))
              if not rok then
                if type(r) == "table" and r.code == "ECANCELED" then
                  error(r, 0)
                end
                local b = type(r) == "table" and r.build
                return { identifier = t.identifier, status = "FAILED", id = b and b.id,
                  error = type(r) == "table" and r.message or tostring(r) }
              end
              return { identifier = t.identifier, status = r.status, id = r.id, number = r.number }
            end)
            handles[#handles + 1] = { task = h, t = t }
          end
        end
      end
      if #handles == 0 then
        break
      end
      local list = {}
      for i, h in ipairs(handles) do
        list[i] = h.task
      end
      local k = tide.wait_any(list)
      local h = table.remove(handles, k)
      running = running - 1
      local wok, r = pcall(h.task.wait, h.task)
      if not wok then
        r = { identifier = h.t.identifier, status = "STOPPED",
          error = type(r) == "table" and r.message or tostring(r) }
      end
      results[h.t.identifier] = r
      state[h.t.identifier] = r.status == "SUCCEEDED" and "succeeded" or "failed"
      if r.status ~= "SUCCEEDED" and not h.t.ignore_failure then
        failed = true
        if spec.batch.fast_fail and not stopping then
          stopping = true
          for _, other in ipairs(handles) do
            other.task:cancel()
          end
        end
      end
    end
  end)
  if not ok then
    for _, h in ipairs(handles) do
      h.task:cancel()
    end
    if type(err) == "table" and err.code == "ECANCELED" then
      batch.status = "STOPPED"
    else
      batch.status = "FAULT"
      batch.error = type(err) == "table" and err.message or tostring(err)
    end
  else
    batch.status = failed and "FAILED" or "SUCCEEDED"
  end
  for _, t in ipairs(tasks) do
    batch.builds[#batch.builds + 1] = results[t.identifier] or { identifier = t.identifier,
      status = "NOT_RUN" }
  end
  batch.ended = tide.now()
  records.batch_finish(batch)
  return batch
end

return M
