--- TESTNGXML: testng-results.xml (TestNG's XMLReporter, also written by Surefire's TestNG
--- provider). A case is a <test-method> in a <class>; the class name is its suite.
---   status PASS -> SUCCEEDED, FAIL -> FAILED, SKIP -> SKIPPED, anything else -> UNKNOWN.
--- Configuration methods (is-config="true": @BeforeClass and the like) are not tests; one that
--- failed is kept as an ERROR case, because the tests it skipped would otherwise hide why.
local common = require("tide.reports.common")
local xml = require("tide.reports.xml")

local M = {}

local STATUS = { PASS = "SUCCEEDED", FAIL = "FAILED", SKIP = "SKIPPED" }

function M.parse(data, file, format)
  local result = common.test_result(format, file)
  local case, exception
  xml.parse(data, file, {
    what = "TestNG XML",
    roots = { ["testng-results"] = true },
    text = { message = true, ["full-stacktrace"] = true },
    open = function(frame, stack)
      local a = frame.attrs
      if frame.name == "test-method" then
        local class = xml.ancestor(stack, "class")
        local status = STATUS[a.status] or "UNKNOWN"
        local config = a["is-config"] == "true"
        if config and status ~= "FAILED" then
          case = nil
          return
        end
        local ms = common.number(a["duration-ms"])
        case = {
          name = a.name,
          suite = class and class.attrs.name,
          prefix = class and class.attrs.name,
          status = config and "ERROR" or status,
          duration = ms and ms / 1000,
        }
        exception = nil
      elseif frame.name == "exception" and case then
        exception = { class = a.class }
      end
    end,
    close = function(frame, stack, line)
      local name = frame.name
      if name == "test-method" then
        if case then
          if exception then
            local head = exception.class
            if exception.message and common.trim(exception.message) ~= "" then
              head = (head and head .. ": " or "") .. common.trim(exception.message)
            end
            case.message = common.message(head, exception.trace)
          end
          common.add_case(result, case, line)
          case = nil
        end
      elseif exception and stack[#stack - 1].name == "exception" then
        if name == "message" then
          exception.message = frame.text
        elseif name == "full-stacktrace" then
          exception.trace = frame.text
        end
      end
    end,
  })
  return common.finish_test(result)
end

return M
