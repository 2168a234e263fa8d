--- Test and coverage reports of `tide build`, as CodeBuild's report groups keep them: parse the
--- report files a build wrote (ten formats), record a group's results in the state store, and
--- read them back. docs/reports.md has the formats and how each maps to the statuses.
local tide = require("tide")
local common = require("tide.reports.common")

local M = {}

--- file-format -> {kind, parser module}. The names are CodeBuild's.
local FORMATS = {
  JUNITXML = { "test", "tide.reports.junit" },
  NUNITXML = { "test", "tide.reports.nunit" },
  NUNIT3XML = { "test", "tide.reports.nunit" },
  TESTNGXML = { "test", "tide.reports.testng" },
  VISUALSTUDIOTRX = { "test", "tide.reports.trx" },
  CUCUMBERJSON = { "test", "tide.reports.cucumber" },
  CLOVERXML = { "coverage", "tide.reports.clover" },
  COBERTURAXML = { "coverage", "tide.reports.cobertura" },
  JACOCOXML = { "coverage", "tide.reports.jacoco" },
  SIMPLECOV = { "coverage", "tide.reports.simplecov" },
}

M.DEFAULT_FORMAT = "JUNITXML"
M.TEST_FORMATS = { "CUCUMBERJSON", "JUNITXML", "NUNITXML", "NUNIT3XML", "TESTNGXML",
  "VISUALSTUDIOTRX" }
M.COVERAGE_FORMATS = { "CLOVERXML", "COBERTURAXML", "JACOCOXML", "SIMPLECOV" }
M.STATUSES = common.STATUSES
M.limits = {
  file_bytes = common.MAX_FILE_BYTES,
  depth = common.MAX_DEPTH,
  cases = common.MAX_CASES,
  files = common.MAX_FILES,
  message = common.MAX_MESSAGE,
  name = common.MAX_NAME,
}

--- The canonical name of a file-format (case-insensitive; nil gives JUNITXML), or an EINPUT
--- error naming the accepted ones.
function M.format(format)
  if format == nil then
    return M.DEFAULT_FORMAT
  end
  local name = type(format) == "string" and format:upper()
  if not name or not FORMATS[name] then
    local all = {}
    table.move(M.TEST_FORMATS, 1, #M.TEST_FORMATS, 1, all)
    table.move(M.COVERAGE_FORMATS, 1, #M.COVERAGE_FORMATS, #all + 1, all)
    error(tide.error("EINPUT", string.format("unknown report file-format '%s' (expected one of %s)",
      tostring(format), table.concat(all, ", "))), 0)
  end
  return name
end

--- The kind of a format: "test" or "coverage".
function M.kind(format)
  return FORMATS[M.format(format)][1]
end

--- Parses the text of a report file. name is used in results and messages.
function M.parse_string(data, format, name)
  if type(data) ~= "string" then
    error("reports.parse_string: data must be a string", 2)
  end
  name = name or "<string>"
  format = M.format(format)
  if #data > common.MAX_FILE_BYTES then
    common.limit(name, nil, "%d bytes, more than the %d a report file may have", #data,
      common.MAX_FILE_BYTES)
  end
  return require(FORMATS[format][2]).parse(data, name, format)
end

--- Parses the report file at path.
function M.parse(path, format)
  if type(path) ~= "string" then
    error("reports.parse: path must be a string", 2)
  end
  format = M.format(format)
  local uv = require("tide.uv")
  local st, msg, code = uv.fs_stat(path)
  if not st then
    msg = msg:match("^%u+: (.-): ") or msg
    error(tide.error(code or "EIO", string.format("report file '%s': %s", path, msg)), 0)
  end
  if st.type ~= "file" then
    common.fail(path, nil, "not a regular file (%s)", st.type)
  end
  if st.size > common.MAX_FILE_BYTES then
    common.limit(path, nil, "%d bytes, more than the %d a report file may have", st.size,
      common.MAX_FILE_BYTES)
  end
  local f, err = io.open(path, "rb")
  if not f then
    error(tide.error("EIO", string.format("report file '%s': %s", path, err)), 0)
  end
  local data = f:read(common.MAX_FILE_BYTES + 1) or ""
  f:close()
  return M.parse_string(data, format, path)
end

-- Results of one group taken together: kind, format, files read, unreadable files, summary.
local function aggregate(results)
  local agg = { files = 0, errors = {} }
  local tests = { total = 0, duration = 0 }
  for _, s in ipairs(common.STATUSES) do
    tests[s] = 0
  end
  local cov = { lines_covered = 0, lines_missed = 0, branches_covered = 0, branches_missed = 0 }
  local counted, pct_only = true, nil
  for i, r in ipairs(results) do
    if type(r) ~= "table" then
      error(string.format("reports: result %d is a %s, not a table", i, type(r)), 3)
    end
    if r.kind ~= "test" and r.kind ~= "coverage" then
      -- A file that could not be read: {file=, error=} or a TideError with its file.
      agg.errors[#agg.errors + 1] = { file = r.file, message = tostring(r.error or r.message or r) }
    else
      if agg.kind and agg.kind ~= r.kind then
        error(tide.error("EINPUT", string.format(
          "a report group holds either test or coverage reports, not both ('%s' is %s)",
          tostring(r.file), r.kind)), 0)
      end
      agg.kind, agg.format = r.kind, agg.format or r.format
      agg.files = agg.files + 1
      local s = r.summary or {}
      if r.kind == "test" then
        tests.total = tests.total + (s.total or 0)
        tests.duration = tests.duration + (s.duration or 0)
        for _, st in ipairs(common.STATUSES) do
          tests[st] = tests[st] + (s[st] or 0)
        end
      elseif s.lines_covered then
        for k in pairs(cov) do
          cov[k] = cov[k] + (s[k] or 0)
        end
      else
        counted = false
        pct_only = pct_only or s
      end
    end
  end
  if agg.kind == "coverage" then
    if counted or agg.files > 1 and cov.lines_covered + cov.lines_missed > 0 then
      cov.line_pct = common.pct(cov.lines_covered, cov.lines_missed)
      cov.branch_pct = common.pct(cov.branches_covered, cov.branches_missed)
      agg.summary = cov
    else
      -- Only percentages (SimpleCov's .last_run.json): nothing to add up.
      agg.summary = { line_pct = pct_only.line_pct, branch_pct = pct_only.branch_pct }
    end
  else
    agg.summary = tests
  end
  return agg
end

--- The report status CodeBuild would give: FAILED when a test case failed or erred, INCOMPLETE
--- when a file could not be read, else SUCCEEDED. Coverage reports only fail by the latter.
local function report_status(agg)
  if agg.kind == "test" and (agg.summary.FAILED > 0 or agg.summary.ERROR > 0) then
    return "FAILED"
  end
  if #agg.errors > 0 then
    return "INCOMPLETE"
  end
  return "SUCCEEDED"
end

local SCHEMA = {
  [[
CREATE TABLE reports (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  build_id TEXT NOT NULL,
  report_group TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('test', 'coverage')),
  format TEXT NOT NULL,
  status TEXT NOT NULL,
  files INTEGER NOT NULL,
  errors TEXT,
  total INTEGER, succeeded INTEGER, failed INTEGER, error INTEGER, skipped INTEGER,
  unknown INTEGER, duration REAL,
  line_pct REAL, lines_covered INTEGER, lines_missed INTEGER,
  branch_pct REAL, branches_covered INTEGER, branches_missed INTEGER,
  created_us INTEGER NOT NULL
);
CREATE INDEX reports_build ON reports (build_id, report_group);
CREATE INDEX reports_created ON reports (created_us);
CREATE TABLE report_cases (
  report_id INTEGER NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  file TEXT, suite TEXT, prefix TEXT, name TEXT NOT NULL, status TEXT NOT NULL,
  duration REAL, message TEXT,
  PRIMARY KEY (report_id, seq)
) WITHOUT ROWID;
CREATE INDEX report_cases_status ON report_cases (report_id, status);
CREATE TABLE report_files (
  report_id INTEGER NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  file TEXT, path TEXT NOT NULL,
  line_pct REAL, lines_covered INTEGER, lines_missed INTEGER,
  branch_pct REAL, branches_covered INTEGER, branches_missed INTEGER,
  PRIMARY KEY (report_id, seq)
) WITHOUT ROWID;
]],
}

local function db()
  return require("tide.db")
end

-- Test names and messages are run output: secrets a run read never reach the store.
local function masked(text)
  return text and tide.mask(text)
end

--- Records the results of one report group of a build (a list of parse results; an entry
--- {file=, error=} stands for a file that could not be read). Returns the report's id.
function M.record(build_id, group, results)
  if type(build_id) ~= "string" or build_id == "" then
    error("reports.record: build id must be a non-empty string", 2)
  end
  if type(group) ~= "string" or group == "" then
    error("reports.record: group must be a non-empty string", 2)
  end
  if type(results) ~= "table" then
    error("reports.record: results must be a list", 2)
  end
  local agg = aggregate(results)
  agg.kind = agg.kind or "test"
  agg.format = agg.format or M.DEFAULT_FORMAT
  local status = report_status(agg)
  local s = agg.summary
  local errors
  if #agg.errors > 0 then
    errors = tide.mask(require("tide.json").encode(agg.errors))
  end
  local d = db()
  d.migrate("reports", SCHEMA)
  return d.tx(function()
    local _, id = d.exec("INSERT INTO reports (build_id, report_group, kind, format, status, "
      .. "files, errors, total, succeeded, failed, error, skipped, unknown, duration, line_pct, "
      .. "lines_covered, lines_missed, branch_pct, branches_covered, branches_missed, "
      .. "created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      build_id, group, agg.kind, agg.format, status, agg.files, errors, s.total, s.SUCCEEDED,
      s.FAILED, s.ERROR, s.SKIPPED, s.UNKNOWN, s.duration, s.line_pct, s.lines_covered,
      s.lines_missed, s.branch_pct, s.branches_covered, s.branches_missed,
      math.floor(tide.now() * 1e6))
    local seq = 0
    for _, r in ipairs(results) do
      if r.kind == "test" then
        for _, c in ipairs(r.cases) do
          seq = seq + 1
          d.exec("INSERT INTO report_cases (report_id, seq, file, suite, prefix, name, status, "
            .. "duration, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", id, seq, r.file,
            masked(c.suite), masked(c.prefix), tide.mask(c.name or ""), c.status, c.duration,
            masked(c.message))
        end
      elseif r.kind == "coverage" then
        for _, f in ipairs(r.files) do
          seq = seq + 1
          d.exec("INSERT INTO report_files (report_id, seq, file, path, line_pct, lines_covered, "
            .. "lines_missed, branch_pct, branches_covered, branches_missed) "
            .. "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", id, seq, r.file, f.path, f.line_pct,
            f.lines_covered, f.lines_missed, f.branch_pct, f.branches_covered, f.branches_missed)
        end
      end
    end
    return id
  end)
end

-- Whether the tables exist: a store nothing has recorded a report in has none, and a read-only
-- store (the CLI's) cannot create them.
local function have_tables()
  return db().row("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'reports'")
    ~= nil
end

local function report_of(row)
  local r = {
    id = row.id,
    build = row.build_id,
    group = row.report_group,
    kind = row.kind,
    format = row.format,
    status = row.status,
    files = row.files,
    created = row.created_us / 1e6,
    errors = row.errors and require("tide.json").decode(row.errors) or require("tide.json").array(),
  }
  if row.kind == "test" then
    r.summary = { total = row.total, SUCCEEDED = row.succeeded, FAILED = row.failed,
      ERROR = row.error, SKIPPED = row.skipped, UNKNOWN = row.unknown, duration = row.duration }
  else
    r.summary = { line_pct = row.line_pct, lines_covered = row.lines_covered,
      lines_missed = row.lines_missed, branch_pct = row.branch_pct,
      branches_covered = row.branches_covered, branches_missed = row.branches_missed }
  end
  return r
end

--- Recorded reports, newest first: opts.build and opts.group filter; opts.limit (default 50,
--- <= 0 for all) caps the count; opts.status filters on the report status.
function M.list(opts)
  opts = opts or {}
  if not have_tables() then
    return {}
  end
  local where, args = {}, {}
  for key, column in pairs({ build = "build_id", group = "report_group", status = "status" }) do
    if opts[key] ~= nil then
      where[#where + 1] = column .. " = ?"
      args[#args + 1] = tostring(opts[key])
    end
  end
  local limit = opts.limit or 50
  local sql = "SELECT * FROM reports"
    .. (#where > 0 and " WHERE " .. table.concat(where, " AND ") or "")
    .. " ORDER BY id DESC" .. (limit > 0 and " LIMIT " .. math.floor(limit) or "")
  local out = {}
  for i, row in ipairs(db().rows(sql, table.unpack(args))) do
    out[i] = report_of(row)
  end
  return out
end

--- The test cases of a report in file order. opts.status: a status word or a list of them.
function M.cases(report_id, opts)
  opts = opts or {}
  if not have_tables() then
    return {}
  end
  local statuses = opts.status
  if type(statuses) == "string" then
    statuses = { statuses }
  end
  local sql = "SELECT file, suite, prefix, name, status, duration, message FROM report_cases "
    .. "WHERE report_id = ?"
  local args = { report_id }
  if statuses and #statuses > 0 then
    sql = sql .. " AND status IN (" .. string.rep("?", #statuses, ", ") .. ")"
    table.move(statuses, 1, #statuses, 2, args)
  end
  return db().rows(sql .. " ORDER BY seq", table.unpack(args))
end

--- The per-file coverage of a coverage report, in file order.
function M.coverage_files(report_id)
  if not have_tables() then
    return {}
  end
  return db().rows("SELECT file, path, line_pct, lines_covered, lines_missed, branch_pct, "
    .. "branches_covered, branches_missed FROM report_files WHERE report_id = ? ORDER BY seq",
    report_id)
end

local function fmt_pct(p)
  return p and string.format("%.1f %%", p) or "n/a"
end

--- The summary of one report as text: "120 tests, 118 succeeded, 2 failed, 0 skipped (3.2 s)"
--- (errors and unknown only when there are some), or "line 81.3 %, branch 64.0 %".
function M.summary_text(kind, summary, errors)
  local s = summary or {}
  local text
  if kind == "coverage" then
    text = string.format("line %s, branch %s", fmt_pct(s.line_pct), fmt_pct(s.branch_pct))
  else
    local extra = ""
    if (s.ERROR or 0) > 0 then
      extra = extra .. string.format(", %d error%s", s.ERROR, s.ERROR == 1 and "" or "s")
    end
    if (s.UNKNOWN or 0) > 0 then
      extra = extra .. string.format(", %d unknown", s.UNKNOWN)
    end
    text = string.format("%d test%s, %d succeeded, %d failed%s, %d skipped (%.1f s)",
      s.total or 0, s.total == 1 and "" or "s", s.SUCCEEDED or 0, s.FAILED or 0, extra,
      s.SKIPPED or 0, s.duration or 0)
  end
  if errors and #errors > 0 then
    text = text .. string.format("; %d file%s could not be read", #errors,
      #errors == 1 and "" or "s")
  end
  return text
end

--- One line for a group: "report group 'unit': " and its summary text.
function M.summary_line(group, kind, summary, errors)
  return string.format("report group '%s': %s", group, M.summary_text(kind, summary, errors))
end

--- The summary a build prints, one line per group, in group-name order. results maps a group
--- name to its list of parse results (as given to record); a list of reports from
--- reports.list is accepted too.
function M.summary_lines(results)
  local groups = {}
  if results[1] ~= nil then
    for _, r in ipairs(results) do
      groups[#groups + 1] = { name = r.group, kind = r.kind, summary = r.summary,
        errors = r.errors }
    end
  else
    for name, list in pairs(results) do
      local agg = aggregate(list)
      groups[#groups + 1] = { name = name, kind = agg.kind, summary = agg.summary,
        errors = agg.errors }
    end
    table.sort(groups, function(a, b) return a.name < b.name end)
  end
  local lines = {}
  for i, g in ipairs(groups) do
    lines[i] = M.summary_line(g.name, g.kind, g.summary, g.errors)
  end
  return lines
end

return M
