--- NUNITXML (NUnit 2.x console, root <test-results>) and NUNIT3XML (NUnit 3 console and the
--- NUnit3 test adapter, root <test-run>). A case is a <test-case>; its suite is the nearest
--- enclosing <test-suite type="TestFixture"> (NUnit 3: the case's classname).
---
--- NUnit 2 result attribute:
---   Success -> SUCCEEDED; Failure -> FAILED; Error, NotRunnable, Cancelled -> ERROR;
---   Ignored, Skipped -> SKIPPED; Inconclusive -> UNKNOWN.
---   Without result: executed="False" -> SKIPPED, success="True" -> SUCCEEDED, else FAILED.
--- NUnit 3 result attribute (with label):
---   Passed, Warning -> SUCCEEDED; Failed -> FAILED, or ERROR when label is Error, Invalid or
---   Cancelled; Skipped -> SKIPPED; Inconclusive -> UNKNOWN.
local common = require("tide.reports.common")
local xml = require("tide.reports.xml")

local M = {}

local NUNIT2 = {
  Success = "SUCCEEDED",
  Failure = "FAILED",
  Error = "ERROR",
  NotRunnable = "ERROR",
  Cancelled = "ERROR",
  Ignored = "SKIPPED",
  Skipped = "SKIPPED",
  Inconclusive = "UNKNOWN",
}

local NUNIT3 = {
  Passed = "SUCCEEDED",
  Warning = "SUCCEEDED",
  Failed = "FAILED",
  Skipped = "SKIPPED",
  Inconclusive = "UNKNOWN",
}
local NUNIT3_ERROR_LABELS = { Error = true, Invalid = true, Cancelled = true }

local function status2(a)
  if a.result then
    return NUNIT2[a.result] or "UNKNOWN"
  end
  if a.executed == "False" then
    return "SKIPPED"
  end
  return a.success == "True" and "SUCCEEDED" or "FAILED"
end

local function status3(a)
  local s = NUNIT3[a.result] or "UNKNOWN"
  if s == "FAILED" and NUNIT3_ERROR_LABELS[a.label] then
    return "ERROR"
  end
  return s
end

-- The enclosing fixture: its full name (NUnit 3) or short name (NUnit 2), or the nearest suite.
local function fixture(stack)
  for i = #stack - 1, 1, -1 do
    local f = stack[i]
    if f.name == "test-suite" and f.attrs.type == "TestFixture" then
      return f.attrs.fullname or f.attrs.name
    end
  end
  local s = xml.ancestor(stack, "test-suite")
  return s and (s.attrs.fullname or s.attrs.name)
end

-- NUnit 2 names a case by its full name ("Ns.Fixture.Method(args)"): split it at the fixture
-- into suite "Ns.Fixture" and name "Method(args)".
local function split2(name, fixture_name)
  if fixture_name then
    local plain = name:match("^[^(]*")
    local i = select(2, plain:find("^(.*%.)" .. fixture_name:gsub("%p", "%%%0") .. "%."))
      or (plain:sub(1, #fixture_name + 1) == fixture_name .. "." and #fixture_name + 1)
    if i then
      return name:sub(1, i - 1), name:sub(i + 1)
    end
  end
  return fixture_name, name
end

function M.parse(data, file, format)
  local v3 = format == "NUNIT3XML"
  local result = common.test_result(format, file)
  local case, texts
  xml.parse(data, file, {
    what = v3 and "NUnit 3 XML" or "NUnit 2 XML",
    roots = v3 and { ["test-run"] = true } or { ["test-results"] = true },
    text = { message = true, ["stack-trace"] = true },
    open = function(frame, stack)
      if frame.name == "test-case" then
        local a = frame.attrs
        local suite, name = a.classname or fixture(stack), a.name or ""
        if not v3 then
          suite, name = split2(name, fixture(stack))
        end
        case = {
          name = name,
          suite = suite,
          prefix = v3 and a.classname or suite,
          status = v3 and status3(a) or status2(a),
          duration = common.number(v3 and a.duration or a.time),
        }
        texts = {}
      end
    end,
    close = function(frame, stack, line)
      local name = frame.name
      if name == "test-case" then
        if case then
          -- A failure's text wins over a skip or warning reason.
          local t = texts.failure or texts.reason or texts.assertion or {}
          case.message = common.message(t.message, t["stack-trace"])
          common.add_case(result, case, line)
          case = nil
        end
      elseif case and (name == "message" or name == "stack-trace") then
        local parent = stack[#stack - 1].name
        texts[parent] = texts[parent] or {}
        texts[parent][name] = texts[parent][name] or frame.text
      end
    end,
  })
  return common.finish_test(result)
end

return M
