-- Creates the calc repository the example pipeline builds: tide examples/pipeline/setup.lua DIR
-- makes DIR/app, a git repository holding examples/pipeline/app in one commit.
local fs = require("tide.fs")
local git = require("tide.git")

local dir = assert(arg[1], "usage: tide examples/pipeline/setup.lua DIR")
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local path = dir .. "/app"
assert(fs.mkdir_p(dir))
fs.rm_r(path)
assert(fs.copy_tree(here .. "/app", path))
local repo = git.init(path)
-- The first commit goes to main, whatever init.defaultBranch says.
assert(fs.write(path .. "/.git/HEAD", "ref: refs/heads/main\n"))
repo:add(".")
local id = repo:commit("calc 1.0.0", { author = { name = "Calc Dev", email = "dev@calc.test" } })
print(path .. " " .. id)
