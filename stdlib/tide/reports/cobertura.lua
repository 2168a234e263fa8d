--- COBERTURAXML: Cobertura's coverage-04 format, as coverage.py (`coverage xml`), Cobertura,
--- gcovr, istanbul/nyc, coverlet and ReportGenerator write it.
--- Lines: every <line> of a <class> (not the copies under <methods>); covered when hits > 0.
--- Lines of several classes of one file (Java inner classes) are merged by line number.
--- Branches: from a line's condition-coverage="50% (1/2)".
--- The totals are the root's lines-covered/lines-valid and branches-covered/branches-valid when
--- the file states them (coverage.py, Cobertura 2), else the sums over the files.
local common = require("tide.reports.common")
local xml = require("tide.reports.xml")

local M = {}

local function int(s)
  local n = common.number(s)
  return n and math.floor(n)
end

function M.parse(data, file, format)
  local result = common.coverage_result(format, file)
  local files, order = {}, {} -- filename -> {lines = {nr -> hits}, branches = {nr -> {c, t}}}
  local root, current
  xml.parse(data, file, {
    what = "Cobertura XML",
    roots = { coverage = true },
    open = function(frame, stack, line)
      local a = frame.attrs
      local name = frame.name
      if name == "coverage" then
        root = a
      elseif name == "class" then
        local path = a.filename or a.name or ""
        current = files[path]
        if not current then
          if #order >= common.MAX_FILES then
            common.limit(file, line, "more than %d covered files", common.MAX_FILES)
          end
          current = { path = path, lines = {}, branches = {} }
          files[path] = current
          order[#order + 1] = current
        end
      elseif name == "line" and current and stack[#stack - 1].name == "lines"
          and stack[#stack - 2].name == "class" then
        local nr, hits = int(a.number), int(a.hits)
        if nr then
          current.lines[nr] = math.max(current.lines[nr] or 0, hits or 0)
          if a.branch == "true" and a["condition-coverage"] then
            local c, t = a["condition-coverage"]:match("%((%d+)/(%d+)%)")
            c, t = tonumber(c), tonumber(t)
            if c and t and c <= t then
              local prev = current.branches[nr]
              if not prev or c > prev[1] then
                current.branches[nr] = { c, t }
              end
            end
          end
        end
      end
    end,
    close = function(frame)
      if frame.name == "class" then
        current = nil
      end
    end,
  })
  for _, f in ipairs(order) do
    local lc, lm, bc, bm = 0, 0, 0, 0
    for _, hits in pairs(f.lines) do
      if hits > 0 then
        lc = lc + 1
      else
        lm = lm + 1
      end
    end
    for _, b in pairs(f.branches) do
      bc, bm = bc + b[1], bm + b[2] - b[1]
    end
    common.add_file(result, { path = f.path, lines_covered = lc, lines_missed = lm,
      branches_covered = bc, branches_missed = bm })
  end
  local totals
  local lcov, lval = int(root["lines-covered"]), int(root["lines-valid"])
  if lcov and lval and lcov <= lval then
    totals = { lines_covered = lcov, lines_missed = lval - lcov }
    local bcov, bval = int(root["branches-covered"]), int(root["branches-valid"])
    if bcov and bval and bcov <= bval then
      totals.branches_covered, totals.branches_missed = bcov, bval - bcov
    else
      totals.branches_covered, totals.branches_missed = 0, 0
      for _, f in ipairs(result.files) do
        totals.branches_covered = totals.branches_covered + f.branches_covered
        totals.branches_missed = totals.branches_missed + f.branches_missed
      end
    end
  end
  return common.finish_coverage(result, totals)
end

return M
