--- tide reports [BUILD] [--group G] [--failed] [--limit N] [--json]: the test and coverage
--- reports that builds recorded. Without BUILD, the most recent reports; with a build id, its
--- report groups, each with its failed and erred test cases and the files it could not read.
local q = require("tide.cli.query")

local M = {}

local DEFAULT_LIMIT = 20
local MESSAGE_WIDTH = 160

local function first_line(s)
  if not s then
    return nil
  end
  local line = s:match("^%s*([^\n]*)")
  if #line > MESSAGE_WIDTH then
    line = line:sub(1, MESSAGE_WIDTH - 3) .. "..."
  end
  return line
end

local function case_name(c)
  if c.suite and c.suite ~= "" then
    return c.suite .. " > " .. c.name
  end
  return c.name
end

local function seconds(d)
  return d and string.format(" (%.3f s)", d) or ""
end

local function list_recent(ctx, reports, opts)
  local list = reports.list({ group = opts.group, status = opts.failed and "FAILED" or nil,
    limit = opts.limit })
  if ctx.json then
    q.print_json(require("tide.json").array(list))
    return 0
  end
  if #list == 0 then
    io.stdout:write("no reports in '", ctx.home, "'\n")
    return 0
  end
  local rows = { { "ID", "BUILD", "GROUP", "STATUS", "CREATED", "SUMMARY" } }
  for _, r in ipairs(list) do
    rows[#rows + 1] = { tostring(r.id), r.build, r.group, r.status, q.time(r.created),
      reports.summary_text(r.kind, r.summary, r.errors) }
  end
  io.stdout:write(table.concat(q.columns(rows, { 1 }), "\n"), "\n")
  return 0
end

local function show_build(ctx, reports, build, opts)
  local list = reports.list({ build = build, group = opts.group, limit = 0 })
  if #list == 0 then
    q.input("no reports for build '%s'%s in '%s'", build,
      opts.group and " and group '" .. opts.group .. "'" or "", ctx.home)
  end
  -- Groups in the order the build recorded them.
  table.sort(list, function(a, b) return a.id < b.id end)
  local shown = {}
  for _, r in ipairs(list) do
    if not opts.failed or r.status == "FAILED" then
      if r.kind == "test" then
        r.cases = reports.cases(r.id, { status = { "FAILED", "ERROR" } })
      end
      shown[#shown + 1] = r
    end
  end
  if ctx.json then
    for _, r in ipairs(shown) do
      if r.cases then
        r.cases = require("tide.json").array(r.cases)
      end
    end
    q.print_json(require("tide.json").array(shown))
    return 0
  end
  local out = {}
  for _, r in ipairs(shown) do
    out[#out + 1] = string.format("%s  %s (%s)", r.status, reports.summary_line(r.group, r.kind,
      r.summary, r.errors), r.format)
    for _, c in ipairs(r.cases or {}) do
      out[#out + 1] = string.format("  %-7s %s%s", c.status, case_name(c), seconds(c.duration))
      local msg = first_line(c.message)
      if msg and msg ~= "" then
        out[#out + 1] = "          " .. msg
      end
    end
    for _, e in ipairs(r.errors) do
      out[#out + 1] = string.format("  could not read %s: %s", tostring(e.file),
        first_line(e.message))
    end
  end
  if #shown == 0 then
    out[1] = string.format("no failed reports for build '%s'", build)
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
  return 0
end

function M.run(ctx, args)
  local opts, pos = q.parse("reports", ctx, args, {
    flags = { ["--failed"] = "failed" },
    values = { ["--group"] = "group", ["--limit"] = "limit" },
  })
  if #pos > 1 then
    q.usage("reports", "unexpected argument '%s'", pos[2])
  end
  opts.limit = opts.limit and q.id("reports", "--limit", opts.limit) or DEFAULT_LIMIT
  local store = q.open(ctx)
  local reports = require("tide.reports")
  if not store then
    if pos[1] then
      q.input("no reports for build '%s' in '%s'", pos[1], ctx.home)
    end
    if ctx.json then
      q.print_json(require("tide.json").array())
    else
      io.stdout:write("no reports in '", ctx.home, "'\n")
    end
    return 0
  end
  if pos[1] then
    return show_build(ctx, reports, pos[1], opts)
  end
  return list_recent(ctx, reports, opts)
end

return M
