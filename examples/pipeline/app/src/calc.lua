-- calc: a tiny calculator library and command.
local M = {}

function M.add(a, b)
  return a + b
end

function M.mul(a, b)
  return a * b
end

--- Evaluates "A op B" with op one of + and *.
function M.eval(expr)
  local a, op, b = expr:match("^%s*(%-?%d+)%s*([%+%*])%s*(%-?%d+)%s*$")
  if not a then
    return nil, "cannot read '" .. expr .. "'"
  end
  local f = op == "+" and M.add or M.mul
  return f(tonumber(a), tonumber(b))
end

return M
