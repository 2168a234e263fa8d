-- Helper of bench/git.sh, run by tide:
--   tide bench/git.lua port                    a free TCP port on 127.0.0.1
--   tide bench/git.lua clone URL DIR           git.clone
--   tide bench/git.lua changed REPO FROM TO    repo:changed_paths, one path a line
--   tide bench/git.lua changed_time REPO FROM TO N
--                                              the best wall time of N calls, in seconds
local git = require("tide.git")

local mode = arg[1]
if mode == "port" then
  local uv = require("tide.uv")
  local tcp = uv.new_tcp()
  assert(tcp:bind("127.0.0.1", 0))
  print(tcp:getsockname().port)
  tcp:close()
elseif mode == "clone" then
  git.clone(arg[2], arg[3])
elseif mode == "changed" then
  local paths = git.open(arg[2]):changed_paths(arg[3], arg[4])
  io.write(table.concat(paths, "\n"), "\n")
elseif mode == "changed_time" then
  local tide = require("tide")
  local repo = git.open(arg[2])
  local best = math.huge
  for _ = 1, tonumber(arg[5]) do
    local t0 = tide.monotime()
    repo:changed_paths(arg[3], arg[4])
    best = math.min(best, tide.monotime() - t0)
  end
  print(("%.4f"):format(best))
else
  error("usage: tide bench/git.lua port | clone URL DIR | changed REPO FROM TO"
    .. " | changed_time REPO FROM TO N")
end
