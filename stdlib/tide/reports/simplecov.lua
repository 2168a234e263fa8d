--- SIMPLECOV: the JSON that SimpleCov itself writes (not the simplecov-json gem). Three files are
--- read, told apart by their shape:
---   coverage/.resultset.json  {"<command>": {"coverage": {"<path>": {"lines": [...],
---                             "branches": {...}}}, "timestamp": N}}; SimpleCov before 0.18
---                             wrote the lines array directly under the path. Several commands
---                             (RSpec, Minitest) are merged line by line.
---   coverage/coverage.json    the JSON formatter's {"meta": {...}, "coverage": {"<path>":
---                             {"lines": [...], "branches": [{"coverage": N}, ...]}}}
---   coverage/.last_run.json   {"result": {"line": 81.3, "branch": 64.0}} (or "covered_percent"
---                             before 0.18): percentages only, no counts and no files.
--- A line entry is a hit count (covered when > 0), null (not code) or "ignored" (:nocov:).
local common = require("tide.reports.common")
local cucumber = require("tide.reports.cucumber")
local json = require("tide.json")

local M = {}

local function is_object(v)
  return type(v) == "table" and not json.is_array(v) and v[1] == nil
end

local function wrong(file, fmt, ...)
  common.fail(file, nil, "not a SimpleCov JSON report: " .. fmt, ...)
end

local function pct(v)
  return type(v) == "number" and v >= 0 and v <= 100 and v or nil
end

-- Adds the counts of a branches value (nested objects from .resultset.json, or the list of
-- {coverage = N} of coverage.json) into acc = {covered = {}, n}.
local function branches(acc, v, key, depth)
  if depth > 8 then
    return
  end
  if type(v) == "number" then
    acc.slots[key] = (acc.slots[key] or 0) + v
  elseif type(v) == "table" then
    if v.coverage ~= nil and not is_object(v.coverage) then
      if type(v.coverage) == "number" then
        acc.slots[key] = (acc.slots[key] or 0) + v.coverage
      end
      return
    end
    for k, sub in pairs(v) do
      branches(acc, sub, key .. "\0" .. tostring(k), depth + 1)
    end
  end
end

-- Merges one file's coverage value into f = {lines = {}, branch = {slots = {}}}.
local function merge(file, path, f, v)
  local lines = v
  if is_object(v) then
    lines = v.lines
    if v.branches ~= nil then
      branches(f.branch, v.branches, "", 0)
    end
  end
  if type(lines) ~= "table" or is_object(lines) and next(lines) ~= nil then
    wrong(file, "the coverage of '%s' has no lines array", path)
  end
  for i, hits in ipairs(lines) do
    if type(hits) == "number" then
      f.lines[i] = (f.lines[i] or 0) + hits
    end
  end
end

local function files_of(file, result, coverages)
  local byname, order = {}, {}
  for _, cov in ipairs(coverages) do
    for path, v in pairs(cov) do
      if type(path) ~= "string" then
        wrong(file, "file names must be strings")
      end
      local f = byname[path]
      if not f then
        if #order >= common.MAX_FILES then
          common.limit(file, nil, "more than %d covered files", common.MAX_FILES)
        end
        f = { path = path, lines = {}, branch = { slots = {} } }
        byname[path] = f
        order[#order + 1] = f
      end
      merge(file, path, f, v)
    end
  end
  table.sort(order, function(a, b) return a.path < b.path end)
  for _, f in ipairs(order) do
    local lc, lm, bc, bm = 0, 0, 0, 0
    for _, hits in pairs(f.lines) do
      if hits > 0 then
        lc = lc + 1
      else
        lm = lm + 1
      end
    end
    for _, hits in pairs(f.branch.slots) do
      if hits > 0 then
        bc = bc + 1
      else
        bm = bm + 1
      end
    end
    common.add_file(result, { path = f.path, lines_covered = lc, lines_missed = lm,
      branches_covered = bc, branches_missed = bm })
  end
  return common.finish_coverage(result)
end

function M.parse(data, file, format)
  local doc = cucumber.decode(data, file, "SimpleCov JSON")
  if not is_object(doc) or next(doc) == nil then
    wrong(file, "expected an object")
  end
  local result = common.coverage_result(format, file)
  if is_object(doc.result) then -- .last_run.json
    local line = pct(doc.result.line) or pct(doc.result.covered_percent)
    if not line then
      wrong(file, "'result' has no line percentage")
    end
    result.summary = { line_pct = line, branch_pct = pct(doc.result.branch) }
    return result
  end
  if is_object(doc.coverage) then -- coverage.json
    return files_of(file, result, { doc.coverage })
  end
  local coverages = {}
  local names = {}
  for name in pairs(doc) do
    names[#names + 1] = tostring(name)
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local run = doc[name]
    if not is_object(run) or not is_object(run.coverage) then
      wrong(file, "'%s' has no 'coverage' object", name)
    end
    coverages[#coverages + 1] = run.coverage
  end
  return files_of(file, result, coverages)
end

return M
