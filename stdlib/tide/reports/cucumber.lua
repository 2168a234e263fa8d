--- CUCUMBERJSON: the JSON formatter of Cucumber (cucumber-jvm, cucumber-js, cucumber-ruby): an
--- array of features, each with elements (scenarios and backgrounds) made of steps. A case is a
--- scenario; its suite is the feature's name. The steps of a background count towards the
--- scenario that follows it, and so do before/after hooks.
---   any step or hook failed                 -> FAILED
---   else any step ambiguous                 -> ERROR
---   else any step undefined or pending      -> UNKNOWN
---   else any step skipped                   -> SKIPPED
---   else (all passed, or no steps)          -> SUCCEEDED
--- Durations are in nanoseconds, as the formatter writes them; a scenario's is the sum of its
--- steps' and hooks'.
local common = require("tide.reports.common")
local json = require("tide.json")

local M = {}

local RANK = { SUCCEEDED = 0, SKIPPED = 1, UNKNOWN = 2, ERROR = 3, FAILED = 4 }
local STEP = {
  passed = "SUCCEEDED",
  failed = "FAILED",
  ambiguous = "ERROR",
  undefined = "UNKNOWN",
  pending = "UNKNOWN",
  skipped = "SKIPPED",
}

--- Line of the 1-based byte offset pos in data.
function M.line_at(data, pos)
  local _, n = data:sub(1, pos):gsub("\n", "")
  return n + 1
end

--- Decodes data as JSON, or raises EINPUT "file:line: malformed JSON: ...".
function M.decode(data, file, what)
  if not data:find("%S") then
    common.fail(file, nil, "empty file, not a %s report", what)
  end
  local doc, err = json.decode(data)
  if doc == nil then
    local pos = tonumber(err:match("character (%d+)"))
    common.fail(file, pos and M.line_at(data, pos), "malformed JSON: %s", (err:gsub("^json: ", "")))
  end
  return doc
end

local function is_list(v)
  return type(v) == "table" and (json.is_array(v) or v[1] ~= nil or next(v) == nil)
end

local function is_object(v)
  return type(v) == "table" and not json.is_array(v) and v[1] == nil
end

local function str(v)
  return type(v) == "string" and v or nil
end

local function list(v)
  return is_list(v) and v or {}
end

local function wrong(file, fmt, ...)
  common.fail(file, nil, "not a Cucumber JSON report: " .. fmt, ...)
end

-- Folds the steps (or hooks) into acc {status, duration, message}.
local function fold(acc, steps)
  for _, step in ipairs(list(steps)) do
    local r = is_object(step) and step.result
    if is_object(r) then
      local s = STEP[str(r.status)] or "UNKNOWN"
      if RANK[s] > RANK[acc.status] then
        acc.status = s
        local msg = str(r.error_message)
        if msg and s == "FAILED" then
          local where = str(step.name) and (str(step.keyword) or "") .. step.name
          acc.message = where and common.trim(where) .. "\n" .. msg or msg
        end
      end
      local ns = common.number(r.duration)
      if ns then
        acc.duration = (acc.duration or 0) + ns / 1e9
      end
    end
  end
end

function M.parse(data, file, format)
  local doc = M.decode(data, file, "Cucumber JSON")
  if not is_list(doc) then
    wrong(file, "expected an array of features, found %s", is_object(doc) and "an object"
      or type(doc))
  end
  local result = common.test_result(format, file)
  for i, feature in ipairs(doc) do
    if not is_object(feature) then
      wrong(file, "feature %d is not an object", i)
    end
    if feature.elements ~= nil and not is_list(feature.elements) then
      wrong(file, "feature %d: 'elements' is not an array", i)
    end
    local background
    for j, el in ipairs(list(feature.elements)) do
      if not is_object(el) then
        wrong(file, "feature %d: element %d is not an object", i, j)
      end
      local acc = { status = "SUCCEEDED" }
      if el.type == "background" or el.keyword == "Background" then
        background = acc
        fold(acc, el.before)
        fold(acc, el.steps)
        fold(acc, el.after)
      else
        if background then
          acc.status, acc.duration, acc.message = background.status, background.duration,
            background.message
          background = nil
        end
        fold(acc, el.before)
        fold(acc, el.steps)
        fold(acc, el.after)
        common.add_case(result, {
          name = str(el.name) or str(el.id) or "",
          suite = str(feature.name) or str(feature.uri),
          prefix = str(feature.uri),
          status = acc.status,
          duration = acc.duration,
          message = acc.message,
        })
      end
    end
  end
  return common.finish_test(result)
end

return M
