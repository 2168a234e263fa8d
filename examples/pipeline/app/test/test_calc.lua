-- Unit tests of calc, written as a JUnit XML report (reports/junit.xml).
package.path = "src/?.lua;" .. package.path
local calc = require("calc")

local cases = {
  { "adds", function() assert(calc.add(2, 3) == 5) end },
  { "multiplies", function() assert(calc.mul(4, 5) == 20) end },
  { "evaluates", function() assert(calc.eval("7 * 6") == 42) end },
  { "refuses junk", function() assert(calc.eval("seven") == nil) end },
}

local failures, out = 0, {}
for _, c in ipairs(cases) do
  local ok, err = pcall(c[2])
  if ok then
    out[#out + 1] = string.format('  <testcase classname="calc" name="%s"/>', c[1])
  else
    failures = failures + 1
    out[#out + 1] = string.format('  <testcase classname="calc" name="%s"><failure message="%s"/>'
      .. '</testcase>', c[1], tostring(err):gsub('[<>&"]', ""))
  end
  print((ok and "ok   " or "FAIL ") .. c[1])
end
os.execute("mkdir -p reports")
local f = assert(io.open("reports/junit.xml", "w"))
f:write('<?xml version="1.0" encoding="UTF-8"?>\n')
f:write(string.format('<testsuite name="calc" tests="%d" failures="%d">\n', #cases, failures))
f:write(table.concat(out, "\n"), "\n</testsuite>\n")
f:close()
os.exit(failures == 0 and 0 or 1)
