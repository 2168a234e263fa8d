-- What tide maps at start-up: libgit2 and libcrypto (and all they pull in) are opened by their
-- first use, not by the loader (see docs/ARCHITECTURE.md, "Start-up"). A script run by the real
-- binary reads its own /proc/self/maps before and after each first use. When either library
-- cannot be loaded, its operations fail with a TideError naming it, and tide goes on.
local helper = require("helper")

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Prints, at each step, which of the two libraries the process has mapped. The hash comes first
-- so that each step shows one library arriving and the other still absent: libgit2 brings
-- libcrypto with it (through libssh2).
local SCRIPT = [[
local git = require("tide.git")
local artifact = require("tide._artifact")
local dir = assert(os.getenv("STARTUP_DIR"))
local function step(name)
  local f = assert(io.open("/proc/self/maps"))
  local maps = f:read("a")
  f:close()
  print(("%s libgit2=%s libcrypto=%s"):format(name, maps:find("/libgit2.so", 1, true) ~= nil,
    maps:find("/libcrypto.so", 1, true) ~= nil))
end
step("start")
local function try(fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then
    print(("error %s %s"):format(err.code, err.message))
  end
end
try(function()
  assert(artifact.init(dir .. "/store"))
  local r, msg, code = artifact.put_data(dir .. "/store", "some bytes")
  if not r then
    error({ code = code, message = msg })
  end
end)
step("hash")
try(git.init, dir .. "/repo")
try(git.open, dir .. "/repo")
step("git")
]]

describe("start-up", function()
  local dir

  before_each(function()
    dir = helper.tmpdir()
    helper.write(dir .. "/steps.lua", SCRIPT)
  end)

  after_each(function()
    helper.sh("rm -rf " .. q(dir))
  end)

  -- The script's stdout; stderr (where tide reports the finished run) only in failure messages.
  local function run(env)
    local out, rc = helper.sh(("%s STARTUP_DIR=%s %s --plain --home %s %s 2>%s"):format(env or "",
      q(dir), q(helper.tide), q(dir .. "/home"), q(dir .. "/steps.lua"), q(dir .. "/stderr")))
    assert.are.equal(0, rc, out .. helper.read(dir .. "/stderr"))
    return out
  end

  it("maps libgit2 and libcrypto only once they are first used", function()
    local out = run()
    assert.are.equal(table.concat({
      "start libgit2=false libcrypto=false",
      "hash libgit2=false libcrypto=true",
      "git libgit2=true libcrypto=true",
      "",
    }, "\n"), out)
  end)

  it("reports a library that cannot be loaded as an error of each call", function()
    -- Found first through LD_LIBRARY_PATH: a libgit2 without a single symbol (dlsym fails) and a
    -- libcrypto that is not an ELF file (dlopen fails).
    local libs = dir .. "/libs"
    local names, rc = helper.sh("ldconfig -p | awk '$1 ~ /^lib(git2|crypto)\\.so\\./ { print $1 }'")
    assert.are.equal(0, rc)
    local git2 = names:match("(libgit2%.so%.[%d.]+)")
    local crypto = names:match("(libcrypto%.so%.[%d.]+)")
    assert(git2 and crypto, names)
    local _, made = helper.sh(("mkdir -p %s && cc -shared -o %s/%s -x c /dev/null && "
      .. "echo garbage > %s/%s"):format(q(libs), q(libs), git2, q(libs), crypto))
    assert.are.equal(0, made)
    local out = run("LD_LIBRARY_PATH=" .. q(libs))
    local lines = {}
    for l in out:gmatch("[^\n]+") do
      lines[#lines + 1] = l
    end
    local function lit(s)
      return (s:gsub("%p", "%%%0"))
    end
    assert.are.equal(6, #lines, out)
    assert.are.equal("start libgit2=false libcrypto=false", lines[1])
    assert.matches("^error ECRYPTO sha256: cannot load " .. lit(crypto) .. ": .*" .. lit(crypto),
      lines[2])
    assert.are.equal("hash libgit2=false libcrypto=false", lines[3])
    -- Every call reports it, the first and the ones after.
    for i = 4, 5 do
      assert.matches("^error EGIT git%.[a-z]+ '.*/repo': cannot load " .. lit(git2)
        .. ": .*undefined symbol: git_", lines[i])
    end
    assert.are.equal("git libgit2=false libcrypto=false", lines[6])
  end)
end)
