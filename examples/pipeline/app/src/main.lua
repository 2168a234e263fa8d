-- calc "2 + 3" prints 5.
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local calc = require("calc")
local v, err = calc.eval(arg[1] or "")
if not v then
  io.stderr:write("calc: ", err, "\n")
  os.exit(2)
end
print(v)
