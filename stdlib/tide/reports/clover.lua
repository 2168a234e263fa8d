--- CLOVERXML: clover.xml as OpenClover, PHPUnit (--coverage-clover), istanbul/nyc and
--- Xdebug-based tools write it.
--- Lines are statements: lines_covered = coveredstatements, lines_missed = statements -
--- coveredstatements. Branches are conditionals: coveredconditionals of conditionals.
--- The totals come from the <metrics> of <project>; each <file> gives its own <metrics>.
--- <testproject> (the coverage of the test code itself) is left out.
local common = require("tide.reports.common")
local xml = require("tide.reports.xml")

local M = {}

local function counts(a)
  local st, cst = common.number(a.statements), common.number(a.coveredstatements)
  local co, cco = common.number(a.conditionals), common.number(a.coveredconditionals)
  local t = { lines_covered = 0, lines_missed = 0, branches_covered = 0, branches_missed = 0 }
  if st and cst and cst <= st then
    t.lines_covered, t.lines_missed = math.floor(cst), math.floor(st - cst)
  end
  if co and cco and cco <= co then
    t.branches_covered, t.branches_missed = math.floor(cco), math.floor(co - cco)
  end
  return t
end

function M.parse(data, file, format)
  local result = common.coverage_result(format, file)
  local totals
  xml.parse(data, file, {
    what = "Clover XML",
    roots = { coverage = true },
    open = function(frame, stack, line)
      if frame.name ~= "metrics" or xml.ancestor(stack, "testproject") then
        return
      end
      local parent = stack[#stack - 1]
      if parent.name == "project" then
        totals = counts(frame.attrs)
      elseif parent.name == "file" then
        local f = counts(frame.attrs)
        f.path = parent.attrs.path or parent.attrs.name
        common.add_file(result, f, line)
      end
    end,
  })
  return common.finish_coverage(result, totals)
end

return M
