--- A streaming XML reader over expat (Debian's lua-expat, `lxp`) for the report parsers, with the
--- guards that outside input needs:
---   * no DTD entity is accepted: an <!ENTITY> declaration (general or parameter) ends the parse,
---     so neither entity expansion bombs nor external entities (XXE) get anywhere. Expat never
---     fetches external entities itself, and its own amplification limit stays on as a second
---     line, with a lower activation threshold;
---   * element depth is capped (common.MAX_DEPTH), the document size by the caller;
---   * collected text is capped per element, so a huge stack trace costs no more than its cap.
--- The document is fed in chunks; between chunks a task yields to the loop, so a large report
--- does not hold up the other tasks.
local lxp = require("lxp")
local tide = require("tide")
local common = require("tide.reports.common")

local M = {}

local CHUNK = 256 * 1024
local TEXT_CAP = 2 * common.MAX_MESSAGE
-- Expat checks amplification only once this many bytes have come out of entities.
local AMPLIFICATION_THRESHOLD = 1024 * 1024

local function yield_between_chunks()
  if tide.current() and coroutine.isyieldable() then
    tide.sleep(0)
  end
end

--- Parses data (the text of file) as a report read by spec:
---   what   the format's name for messages ("JUnit XML")
---   roots  set of accepted root element names
---   text   set of element names whose direct text (and CDATA) is collected
---   open(frame, stack, line)   at a start tag; frame = {name=, attrs=}, stack[#stack] == frame
---   close(frame, stack, line)  at the end tag; frame.text is the collected text, if asked for
--- Handlers may raise with common.fail(file, line, ...). Errors: EINPUT "file:line: ..." for
--- malformed XML, another root, a DTD entity; ELIMIT for the depth.
function M.parse(data, file, spec)
  if not data:find("[^%s\239\187\191]") then
    common.fail(file, nil, "empty file, not a %s report", spec.what)
  end
  local stack = {}
  local parser
  local function line()
    return (parser:pos())
  end
  local callbacks = {
    StartElement = function(_, name, attrs)
      local depth = #stack + 1
      if depth > common.MAX_DEPTH then
        common.limit(file, line(), "elements nested deeper than %d", common.MAX_DEPTH)
      end
      if depth == 1 and not spec.roots[name] then
        local expected = {}
        for r in pairs(spec.roots) do
          expected[#expected + 1] = "<" .. r .. ">"
        end
        table.sort(expected)
        common.fail(file, line(), "not a %s report: the root element is <%s>, expected %s",
          spec.what, name, table.concat(expected, " or "))
      end
      local frame = { name = name, attrs = attrs }
      if spec.text and spec.text[name] then
        frame.parts, frame.len = {}, 0
      end
      stack[depth] = frame
      if spec.open then
        spec.open(frame, stack, line())
      end
    end,
    EndElement = function()
      local frame = stack[#stack]
      if frame.parts then
        frame.text = table.concat(frame.parts)
        frame.parts = nil
      end
      if spec.close then
        spec.close(frame, stack, line())
      end
      stack[#stack] = nil
    end,
    CharacterData = function(_, s)
      local frame = stack[#stack]
      if frame and frame.parts and frame.len < TEXT_CAP then
        s = s:sub(1, TEXT_CAP - frame.len)
        frame.parts[#frame.parts + 1] = s
        frame.len = frame.len + #s
      end
    end,
    EntityDecl = function(_, name)
      common.fail(file, line(), "entity declarations are not accepted (<!ENTITY %s ...>)", name)
    end,
  }
  parser = lxp.new(callbacks)
  parser:setblathreshold(AMPLIFICATION_THRESHOLD)
  local function check(ok, msg, l, col)
    if not ok then
      common.fail(file, l, "malformed XML (column %d): %s", (col or 0) + 1, msg)
    end
  end
  for i = 1, #data, CHUNK do
    if i > 1 then
      yield_between_chunks()
    end
    check(parser:parse(data:sub(i, i + CHUNK - 1)))
  end
  check(parser:parse())
  parser:close()
end

--- The nearest frame in stack (below the top) named name, or nil.
function M.ancestor(stack, name)
  for i = #stack - 1, 1, -1 do
    if stack[i].name == name then
      return stack[i]
    end
  end
  return nil
end

return M
