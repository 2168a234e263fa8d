--- JACOCOXML: jacoco.xml from the JaCoCo Maven/Gradle plugins and jacococli. Lines and branches
--- are JaCoCo's LINE and BRANCH counters: the totals are the <counter>s directly under <report>,
--- each file's are those directly under its <sourcefile>, whose path is the package's name and
--- the file's ("com/example/Foo.java"). <group>s (multi-module reports) may hold the packages.
local common = require("tide.reports.common")
local xml = require("tide.reports.xml")

local M = {}

local function add(t, a)
  local missed, covered = common.number(a.missed), common.number(a.covered)
  if not missed or not covered then
    return
  end
  if a.type == "LINE" then
    t.lines_covered, t.lines_missed = math.floor(covered), math.floor(missed)
  elseif a.type == "BRANCH" then
    t.branches_covered, t.branches_missed = math.floor(covered), math.floor(missed)
  end
end

local function zeroed(t)
  for _, k in ipairs({ "lines_covered", "lines_missed", "branches_covered", "branches_missed" }) do
    t[k] = t[k] or 0
  end
  return t
end

function M.parse(data, file, format)
  local result = common.coverage_result(format, file)
  local totals = {}
  local current
  xml.parse(data, file, {
    what = "JaCoCo XML",
    roots = { report = true },
    open = function(frame, stack)
      local name = frame.name
      if name == "sourcefile" then
        local package = xml.ancestor(stack, "package")
        local pname = package and package.attrs.name or ""
        local fname = frame.attrs.name or ""
        current = { path = pname ~= "" and pname .. "/" .. fname or fname }
      elseif name == "counter" then
        local parent = stack[#stack - 1]
        if parent.name == "report" then
          add(totals, frame.attrs)
        elseif parent.name == "sourcefile" and current then
          add(current, frame.attrs)
        end
      end
    end,
    close = function(frame, _, line)
      if frame.name == "sourcefile" and current then
        common.add_file(result, zeroed(current), line)
        current = nil
      end
    end,
  })
  return common.finish_coverage(result, next(totals) and zeroed(totals) or nil)
end

return M
