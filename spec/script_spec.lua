-- `tide FILE.lua`: arguments, exit codes and the one-line errors of bad input.
local helper = require("helper")

local dir = helper.tmpdir()

local function write(name, text)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- Runs tide with a fresh home; returns stdout, stderr and the exit code.
local function tide(args)
  local home = helper.tmpdir()
  local errf = home .. "/stderr"
  local out, rc = helper.sh(("TIDE_VIEW=none %s --home %s/.tide %s 2>%s"):format(helper.tide,
    home, args, errf))
  local f = assert(io.open(errf))
  local err = f:read("a")
  f:close()
  return out, err, rc
end

describe("tide FILE.lua", function()
  it("sets arg as the stand-alone lua does and passes the arguments to the chunk", function()
    local path = write("args.lua", [[
      local a, b = ...
      print(arg[0], arg[1], arg[2], #arg, a, b, arg[-1] ~= nil)
    ]])
    local out, _, rc = tide(path .. " one two")
    assert.equal(0, rc)
    assert.equal(path .. "\tone\ttwo\t2\tone\ttwo\ttrue\n", out)
  end)

  it("lets the main chunk block, as a task", function()
    local path = write("block.lua", [[
      local tide = require("tide")
      local t = tide.spawn(function() tide.sleep(0.01) return 7 end)
      print(t:wait())
    ]])
    local out, _, rc = tide(path)
    assert.equal(0, rc)
    assert.equal("7\n", out)
  end)

  it("exits 2 with one line naming file and line on a syntax error", function()
    local path = write("syntax.lua", "local x = \nprint(")
    local out, err, rc = tide(path)
    assert.equal(2, rc)
    assert.equal("", out)
    -- Lua shortens long chunk names with "...": match the file name and line.
    assert.matches("^tide: [^\n]*syntax%.lua:2: [^\n]+\n$", err)
  end)

  it("exits 2 naming a missing file", function()
    local _, err, rc = tide(dir .. "/nope.lua")
    assert.equal(2, rc)
    assert.matches("^tide: cannot open [^\n]*nope%.lua[^\n]*\n$", err)
  end)

  it("exits 2 when the file cannot be read", function()
    local _, err, rc = tide(dir) -- a directory
    assert.equal(2, rc)
    assert.matches("^tide: cannot read [^\n]*\n$", err)
  end)

  it("exits 1 with the traceback on an error in the main chunk", function()
    local path = write("boom.lua", "local function f() error('boom') end\nf()\n")
    local _, err, rc = tide(path)
    assert.equal(1, rc)
    assert.matches("boom.lua:1: boom", err, 1, true)
    assert.matches("stack traceback:", err, 1, true)
  end)

  it("exits 1 and prints the traceback of a task error nobody retrieved", function()
    local path = write("orphan.lua", [[
      local tide = require("tide")
      tide.spawn("lost", function() tide.sleep(0.01) error("orphan failure") end)
      print("main done")
    ]])
    local out, err, rc = tide(path)
    assert.equal(1, rc)
    assert.equal("main done\n", out)
    assert.matches("task 'lost' failed: [^\n]*orphan failure", err)
  end)

  it("exits 0 when a task error was retrieved and handled", function()
    local path = write("handled.lua", [[
      local tide = require("tide")
      local t = tide.spawn(function() error({ code = "X" }) end)
      local ok, e = pcall(t.wait, t)
      assert(not ok and e.code == "X")
    ]])
    local _, err, rc = tide(path)
    assert.equal("", err)
    assert.equal(0, rc)
  end)

  it("waits for tasks the main chunk did not wait for", function()
    local path = write("late.lua", [[
      local tide = require("tide")
      tide.spawn(function() tide.sleep(0.05) print("late") end)
      print("early")
    ]])
    local out, _, rc = tide(path)
    assert.equal(0, rc)
    assert.equal("early\nlate\n", out)
  end)

  it("exits 124 on an uncaught ETIMEDOUT error", function()
    local path = write("timeout.lua", [[ require("tide").raise("ETIMEDOUT", "took too long") ]])
    local _, err, rc = tide(path)
    assert.equal(124, rc)
    assert.equal("tide: took too long\n", err)
  end)

  it("keeps os.exit's code", function()
    local path = write("exit.lua", "os.exit(3)")
    local _, _, rc = tide(path)
    assert.equal(3, rc)
  end)
end)

describe("the command line", function()
  it("rejects an unknown option with exit 2 and one line", function()
    local _, err, rc = tide("--frobnicate")
    assert.equal(2, rc)
    assert.equal("tide: unknown option '--frobnicate' (see 'tide help')\n", err)
  end)

  it("prints the version", function()
    local out, _, rc = tide("version")
    assert.equal(0, rc)
    assert.matches("^tide %d+%.%d+%.%d+\n$", out)
  end)

  it("prints help listing every command", function()
    local out, _, rc = tide("help")
    assert.equal(0, rc)
    for _, cmd in ipairs({ "run", "runs", "show", "logs", "version" }) do
      assert.matches("\n  " .. cmd .. " ", out, 1, true)
    end
  end)

  it("runs a script with `run`", function()
    local path = write("hello.lua", "print('hello')")
    local out, _, rc = tide("run " .. path)
    assert.equal(0, rc)
    assert.equal("hello\n", out)
  end)
end)

describe("TIDE_STDLIB_DIR", function()
  it("loads the standard library from the given tree instead of the embedded copy", function()
    local src = os.getenv("TIDE_SOURCE_DIR") or "."
    local tree = helper.tmpdir()
    assert.equal(0, select(2, helper.sh(("cp -r %s/stdlib/. %s/"):format(src, tree))))
    -- Make the tree's copy of the tide module mark itself.
    local init = tree .. "/tide/init.lua"
    local text = assert(helper.read(init))
    helper.write(init, (text:gsub("return M\n", "M.from_tree = true\nreturn M\n")))
    local path = write("tree.lua", "print(require('tide').from_tree)")
    local out = helper.sh(("TIDE_VIEW=none TIDE_STDLIB_DIR=%s %s --home %s/.tide %s"):format(tree,
      helper.tide, tree, path))
    assert.equal("true\n", out)
    out = helper.sh(("TIDE_VIEW=none %s --home %s/.tide %s"):format(helper.tide, tree, path))
    assert.equal("nil\n", out)
  end)
end)
