--- Pipeline variables: #{namespace.variable} references, resolved just before the action that
--- uses them starts, from the pipeline's variables, codepipeline.* and the outputs of actions
--- with a namespace.
local tide = require("tide")

local M = {}

M.CODEPIPELINE = { PipelineExecutionId = true, PipelineName = true }

local REF = "#{([%w@_%-]+)%.([%w@_%-%.]+)}"

--- Every reference in s, as {ns=, var=, text=} tables.
function M.refs(s)
  local out = {}
  for ns, var in s:gmatch(REF) do
    out[#out + 1] = { ns = ns, var = var, text = "#{" .. ns .. "." .. var .. "}" }
  end
  return out
end

--- A scope: scope[ns][var] = value.
function M.scope(execution_id, pipeline, vars, outputs)
  local scope = { codepipeline = { PipelineExecutionId = tostring(execution_id),
    PipelineName = pipeline }, variables = vars }
  for ns, values in pairs(outputs or {}) do
    scope[ns] = values
  end
  return scope
end

--- s with every reference replaced; raises EINPUT naming where and the variable when one
--- does not resolve.
function M.resolve(s, scope, where)
  return (s:gsub(REF, function(ns, var)
    local values = scope[ns]
    local v = values and values[var]
    if v == nil then
      error(tide.error("EINPUT", string.format("%s: unknown variable #{%s.%s}", where, ns, var)),
        0)
    end
    return tostring(v)
  end))
end

--- A copy of v with references resolved in every string (functions and other values as is).
function M.resolve_all(v, scope, where)
  if type(v) == "string" then
    return M.resolve(v, scope, where)
  elseif type(v) == "table" then
    local out = {}
    for k, x in pairs(v) do
      out[k] = M.resolve_all(x, scope, where)
    end
    return out
  end
  return v
end

return M
