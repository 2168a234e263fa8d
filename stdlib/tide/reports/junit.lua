--- JUNITXML: the JUnit XML family as Maven Surefire/Failsafe, Gradle, pytest, jest-junit,
--- go-junit-report and most others write it. Root <testsuites> or <testsuite>; suites may nest.
---   <testcase> with <error>     -> ERROR
---   <testcase> with <failure>   -> FAILED   (error wins when both are present)
---   <testcase> with <skipped>   -> SKIPPED  (pytest's xfail is a <skipped> too)
---   <testcase> otherwise        -> SUCCEEDED (Surefire's <flakyFailure>/<rerunFailure> only
---                                            record retries of a test that passed in the end)
local common = require("tide.reports.common")
local xml = require("tide.reports.xml")

local M = {}

local RANK = { SUCCEEDED = 0, SKIPPED = 1, FAILED = 2, ERROR = 3 }
local CHILD_STATUS = { failure = "FAILED", error = "ERROR", skipped = "SKIPPED" }

function M.parse(data, file, format)
  local result = common.test_result(format, file)
  local case -- the <testcase> being read
  xml.parse(data, file, {
    what = "JUnit XML",
    roots = { testsuites = true, testsuite = true },
    text = { failure = true, error = true, skipped = true },
    open = function(frame, stack)
      if frame.name == "testcase" then
        local a = frame.attrs
        local suite = xml.ancestor(stack, "testsuite")
        local suite_name = suite and suite.attrs.name
        if suite_name == "" then
          suite_name = nil
        end
        case = {
          name = a.name,
          suite = suite_name or a.classname,
          prefix = a.classname,
          status = "SUCCEEDED",
          duration = common.number(a.time),
        }
      end
    end,
    close = function(frame, stack, line)
      local name = frame.name
      if name == "testcase" then
        if case then
          common.add_case(result, case, line)
          case = nil
        end
      elseif case and CHILD_STATUS[name] and stack[#stack - 1].name == "testcase" then
        local status = CHILD_STATUS[name]
        if RANK[status] > RANK[case.status] then
          case.status = status
          local a = frame.attrs
          local head = a.message
          if a.type and a.type ~= "" and status ~= "SKIPPED" then
            head = head and head ~= "" and a.type .. ": " .. head or a.type
          end
          case.message = common.message(head, frame.text)
        end
      end
    end,
  })
  return common.finish_test(result)
end

return M
