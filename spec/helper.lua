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

return M
