-- Loaded by busted before every spec (see .busted). Specs run inside tide, so the main chunk is
-- a task: blocking calls such as proc.run and tide.sleep work directly in `it` blocks.
local M = {}

--- Path of the tide binary under test (ctest sets TIDE_BIN).
M.tide = os.getenv("TIDE_BIN") or "build/tide"

--- A new empty directory under TMPDIR.
function M.tmpdir()
  local base = os.getenv("TMPDIR") or "/tmp"
  local p = io.popen("mktemp -d " .. base .. "/tide-spec.XXXXXX")
  local dir = p:read("l")
  p:close()
  return dir
end

--- Runs a shell command; returns its stdout, and its exit code.
function M.sh(cmd)
  local p = io.popen(cmd .. "; echo \"__rc=$?\"")
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)\n?$"))
  return out:gsub("__rc=%d+\n?$", ""), rc
end

--- The whole content of a file, or nil when it cannot be opened.
function M.read(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local data = f:read("a")
  f:close()
  return data
end

--- Writes text (default "") to path, replacing it.
function M.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text or "")
  f:close()
end

--- Calls fn(...), which must raise a TideError with code; returns the error.
function M.raises(code, fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error " .. code)
  assert(type(err) == "table" and err.code, "expected a TideError, got " .. tostring(err))
  assert(err.code == code, ("expected error %s, got %s: %s"):format(code, err.code,
    tostring(err.message)))
  return err
end

return M
