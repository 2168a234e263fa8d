--- What the report parsers share: limits, errors that name the file, number and duration
--- parsing, and the builders of test and coverage results.
local tide = require("tide")

local M = {}

--- Limits on what one report file may hold. Real reports sit far below them; a file beyond them
--- is refused rather than allowed to exhaust memory or the loop's time.
M.MAX_FILE_BYTES = 64 * 1024 * 1024
M.MAX_DEPTH = 256
M.MAX_CASES = 200000
M.MAX_FILES = 200000
--- Messages (failure text and stack trace) are kept up to this many bytes.
M.MAX_MESSAGE = 4096
--- Names (test case, suite, file path) are kept up to this many bytes.
M.MAX_NAME = 1024

--- Raises an EINPUT error "file:line: message" (line omitted when nil).
function M.fail(file, line, fmt, ...)
  local where = line and string.format("%s:%d: ", file, line) or file .. ": "
  error(tide.error("EINPUT", where .. string.format(fmt, ...)), 0)
end

--- Raises an ELIMIT error naming the file (and line).
function M.limit(file, line, fmt, ...)
  local where = line and string.format("%s:%d: ", file, line) or file .. ": "
  error(tide.error("ELIMIT", where .. string.format(fmt, ...)), 0)
end

--- Cuts s to at most max bytes without splitting a UTF-8 character, marking the cut.
function M.cut(s, max)
  if s == nil or #s <= max then
    return s
  end
  local marker = string.format("\n[... %d bytes cut]", #s - max)
  local keep = max - #marker
  -- Step back over continuation bytes (10xxxxxx) so the kept text ends on a character boundary.
  while keep > 0 and (s:byte(keep + 1) or 0) & 0xC0 == 0x80 do
    keep = keep - 1
  end
  return s:sub(1, keep) .. marker
end

local function trim(s)
  return s and (s:gsub("^%s+", ""):gsub("%s+$", ""))
end
M.trim = trim

--- A finite non-negative number from attribute text ("1.5", "1,234.5", " 2 "), else nil.
function M.number(s)
  if type(s) == "number" then
    return s == s and s >= 0 and s < math.huge and s or nil
  end
  if type(s) ~= "string" then
    return nil
  end
  local n = tonumber((trim(s):gsub(",", "")))
  if not n or n ~= n or n < 0 or n == math.huge then
    return nil
  end
  return n
end

--- Seconds from a .NET TimeSpan text "hh:mm:ss.fffffff" (or "d.hh:mm:ss"), else nil.
function M.timespan(s)
  if type(s) ~= "string" then
    return nil
  end
  local d, h, m, sec = s:match("^%s*(%d+)%.(%d+):(%d+):([%d.]+)%s*$")
  if not d then
    d = "0"
    h, m, sec = s:match("^%s*(%d+):(%d+):([%d.]+)%s*$")
  end
  sec = sec and tonumber(sec)
  if not sec then
    return nil
  end
  return tonumber(d) * 86400 + tonumber(h) * 3600 + tonumber(m) * 60 + sec
end

--- Joins a message and a stack trace, dropping empty parts and a trace that repeats the message.
function M.message(head, body)
  head, body = trim(head), trim(body)
  if head == "" then
    head = nil
  end
  if body == "" then
    body = nil
  end
  local s
  if head and body then
    s = body:sub(1, #head) == head and body or head .. "\n" .. body
  else
    s = head or body
  end
  return M.cut(s, M.MAX_MESSAGE)
end

--- A new test result for file, in format.
function M.test_result(format, file)
  return { kind = "test", format = format, file = file, cases = {} }
end

--- Appends a case to a test result. status must be one of the five CodeBuild words.
function M.add_case(result, case, line)
  local n = #result.cases + 1
  if n > M.MAX_CASES then
    M.limit(result.file, line, "more than %d test cases", M.MAX_CASES)
  end
  case.name = M.cut(case.name or "", M.MAX_NAME)
  case.suite = M.cut(case.suite, M.MAX_NAME)
  case.prefix = M.cut(case.prefix, M.MAX_NAME)
  case.message = M.cut(case.message, M.MAX_MESSAGE)
  result.cases[n] = case
end

M.STATUSES = { "SUCCEEDED", "FAILED", "ERROR", "SKIPPED", "UNKNOWN" }

--- Fills result.summary from its cases.
function M.finish_test(result)
  local s = { total = #result.cases, duration = 0 }
  for _, st in ipairs(M.STATUSES) do
    s[st] = 0
  end
  for _, c in ipairs(result.cases) do
    s[c.status] = s[c.status] + 1
    s.duration = s.duration + (c.duration or 0)
  end
  result.summary = s
  return result
end

--- A new coverage result for file, in format.
function M.coverage_result(format, file)
  return { kind = "coverage", format = format, file = file, files = {} }
end

--- Percentage of covered in covered + missed, or nil when there is nothing to cover.
function M.pct(covered, missed)
  if not covered or not missed or covered + missed == 0 then
    return nil
  end
  return covered * 100 / (covered + missed)
end

local function counts(t)
  t.line_pct = M.pct(t.lines_covered, t.lines_missed)
  t.branch_pct = M.pct(t.branches_covered, t.branches_missed)
  return t
end

--- Appends a file's counts {path=, lines_covered=, lines_missed=, branches_covered=,
--- branches_missed=} to a coverage result and computes its percentages.
function M.add_file(result, f, line)
  local n = #result.files + 1
  if n > M.MAX_FILES then
    M.limit(result.file, line, "more than %d covered files", M.MAX_FILES)
  end
  f.path = M.cut(f.path or "", M.MAX_NAME)
  result.files[n] = counts(f)
end

--- Fills result.summary: from totals when the report states them, else from its files.
function M.finish_coverage(result, totals)
  if not totals then
    totals = { lines_covered = 0, lines_missed = 0, branches_covered = 0, branches_missed = 0 }
    for _, f in ipairs(result.files) do
      for k in pairs(totals) do
        totals[k] = totals[k] + (f[k] or 0)
      end
    end
  end
  result.summary = counts(totals)
  return result
end

return M
