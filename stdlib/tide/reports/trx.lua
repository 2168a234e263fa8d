--- VISUALSTUDIOTRX: .trx files from `dotnet test --logger trx` and vstest.console. A case is a
--- top-level <UnitTestResult> (the rows of a data-driven test under <InnerResults> are summed up
--- by their parent's outcome). Its suite is the className of its <TestMethod> definition.
---   outcome Passed, PassedButRunAborted, Completed, Warning -> SUCCEEDED
---           Failed, Timeout                                 -> FAILED
---           Error, Aborted, NotRunnable, Disconnected       -> ERROR
---           NotExecuted                                     -> SKIPPED
---           Inconclusive, Pending, InProgress, other         -> UNKNOWN
local common = require("tide.reports.common")
local xml = require("tide.reports.xml")

local M = {}

local OUTCOME = {
  Passed = "SUCCEEDED",
  PassedButRunAborted = "SUCCEEDED",
  Completed = "SUCCEEDED",
  Warning = "SUCCEEDED",
  Failed = "FAILED",
  Timeout = "FAILED",
  Error = "ERROR",
  Aborted = "ERROR",
  NotRunnable = "ERROR",
  Disconnected = "ERROR",
  NotExecuted = "SKIPPED",
}

function M.parse(data, file, format)
  local result = common.test_result(format, file)
  local pending = {} -- {case, testId, line} until the definitions (after the results) are read
  local classes = {} -- testId -> className
  local case, info, unit_test_id
  xml.parse(data, file, {
    what = "Visual Studio TRX",
    roots = { TestRun = true },
    text = { Message = true, StackTrace = true },
    open = function(frame, stack)
      local a = frame.attrs
      local name = frame.name
      if name == "UnitTestResult" and not xml.ancestor(stack, "InnerResults") then
        case = {
          name = a.testName,
          status = OUTCOME[a.outcome] or "UNKNOWN",
          duration = common.timespan(a.duration),
        }
        pending[#pending + 1] = { case = case, test = a.testId }
        info = {}
      elseif name == "UnitTest" then
        unit_test_id = a.id
      elseif name == "TestMethod" and unit_test_id then
        classes[unit_test_id] = a.className
      end
    end,
    close = function(frame, stack, line)
      local name = frame.name
      if name == "UnitTestResult" and case and not xml.ancestor(stack, "InnerResults") then
        -- A data-driven test's own result usually has no error text; its first failed row does.
        if info.Message or info.StackTrace then
          case.message = common.message(info.Message, info.StackTrace)
        else
          case.message = common.message(info.inner_Message, info.inner_StackTrace)
        end
        if #pending > common.MAX_CASES then
          common.limit(file, line, "more than %d test cases", common.MAX_CASES)
        end
        case = nil
      elseif case and (name == "Message" or name == "StackTrace")
          and stack[#stack - 1].name == "ErrorInfo" then
        local key = xml.ancestor(stack, "InnerResults") and "inner_" .. name or name
        info[key] = info[key] or frame.text
      elseif name == "UnitTest" then
        unit_test_id = nil
      end
    end,
  })
  for _, p in ipairs(pending) do
    local class = classes[p.test]
    p.case.suite = class
    p.case.prefix = class
    common.add_case(result, p.case)
  end
  return common.finish_test(result)
end

return M
