--- tide builds [--project NAME] [--limit N]: recent builds, newest first. Also the build side of
--- `tide show BUILD` and `tide logs BUILD` (BUILD: PROJECT:UUID, PROJECT:NUMBER or a uuid prefix).
local q = require("tide.cli.query")

local M = {}

local function open(ctx)
  local store = q.open(ctx)
  if not store then
    return nil
  end
  return require("tide.buildspec.records")
end

local function find(ctx, key)
  local records = open(ctx)
  local b = records and records.get(key)
  if not b then
    q.input("no build '%s' in '%s'", key, ctx.home)
  end
  return b
end

--- Whether word names a build rather than a run.
function M.is_build_key(word)
  return word ~= nil and (word:find(":", 1, true) ~= nil or word:match("^%x%x%x%x%x%x%x%x[%x-]*$")
    ~= nil) and not word:match("^%d+$")
end

function M.run(ctx, args)
  local opts, pos = q.parse("builds", ctx, args, { values = { ["--project"] = "project",
    ["--limit"] = "limit" } })
  if #pos > 0 then
    q.usage("builds", "unexpected argument '%s'", pos[1])
  end
  local limit = opts.limit and q.id("builds", "--limit", opts.limit) or 20
  local records = open(ctx)
  local list = records and records.list(opts.project, limit) or {}
  if ctx.json then
    q.print_json(require("tide.json").array(list))
    return 0
  end
  if #list == 0 then
    io.stdout:write("no builds\n")
    return 0
  end
  for _, b in ipairs(list) do
    local took = b.ended and (b.ended - b.started) or nil
    io.stdout:write(string.format("%-52s #%-4d %-11s %s  %s  run %s\n", b.id, b.number, b.status,
      q.time(b.started), q.duration(took), b.run_id and tostring(b.run_id) or "-"))
  end
  return 0
end

--- tide show BUILD: the build's phases with status, duration and context.
function M.show(ctx, key)
  local b = find(ctx, key)
  if ctx.json then
    q.print_json(b)
    return 0
  end
  local out = { string.format("build %s #%d %s  started %s  %s", b.id, b.number, b.status,
    q.time(b.started), q.duration(b.ended and b.ended - b.started)) }
  out[#out + 1] = string.format("  source %s%s", b.src or "-", b.resolved_source_version and
    ("  (" .. b.resolved_source_version .. ")") or "")
  out[#out + 1] = string.format("  run %s  sandbox %s", b.run_id and tostring(b.run_id) or "-",
    tostring(b.sandbox or "-"))
  for _, p in ipairs(b.phases or {}) do
    local line = string.format("  %-17s %-10s %s", p.type, p.status or "", q.duration(p.duration))
    local c = p.contexts and p.contexts[1]
    if c then
      line = line .. "  " .. tostring(c.statusCode) .. ": " .. tostring(c.message)
    end
    out[#out + 1] = line
  end
  for k, v in pairs(b.exported or {}) do
    out[#out + 1] = string.format("  exported %s=%s", k, v)
  end
  for _, a in ipairs(b.artifacts or {}) do
    out[#out + 1] = string.format("  artifact %s: %d file(s) in %s", a.name, #(a.files or {}),
      a.path)
    for _, f in ipairs(a.files or {}) do
      out[#out + 1] = string.format("    %s  %s", f.sha256 or "-", f.path)
    end
  end
  for _, w in ipairs(b.warnings or {}) do
    out[#out + 1] = "  warning: " .. w
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
  return 0
end

local LOG_PHASES = { "DOWNLOAD_SOURCE", "INSTALL", "PRE_BUILD", "BUILD", "POST_BUILD",
  "UPLOAD_ARTIFACTS", "FINALIZING" }

--- tide logs BUILD [PHASE]: the build's output, phase by phase.
function M.logs(ctx, key, phase)
  local b = find(ctx, key)
  local wanted = phase and phase:upper()
  local any = false
  for _, p in ipairs(LOG_PHASES) do
    if not wanted or wanted == p then
      local f = io.open((b.log_dir or "") .. "/" .. p .. ".log", "rb")
      if f then
        local data = f:read("a")
        f:close()
        if not wanted then
          io.stdout:write(any and "\n" or "", "==> ", p, " <==\n")
        end
        io.stdout:write(data)
        any = true
      end
    end
  end
  if wanted and not any then
    q.input("build %s has no output for phase '%s'", b.id, phase)
  end
  return 0
end

return M
