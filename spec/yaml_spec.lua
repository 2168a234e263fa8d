-- tide.yaml: decode, decode_all, encode, yaml.null and the where object.
local yaml = require("tide.yaml")

-- The source tree (ctest sets TIDE_SOURCE_DIR; busted run by hand starts at the repo root).
local ROOT = os.getenv("TIDE_SOURCE_DIR") or "."
ROOT = ROOT ~= "" and ROOT or "."

local helper = require("helper")

local function read(path)
  return assert(helper.read(path))
end

-- Files in dir (names only, sorted), or nil when dir does not exist.
local function list(dir)
  local p = io.popen('ls -1 "' .. dir .. '" 2>/dev/null')
  local names = {}
  for name in p:lines() do
    names[#names + 1] = name
  end
  local ok = p:close()
  if not ok then
    return nil
  end
  return names
end

-- Decodes text that must fail; returns the message after checking the triple's shape.
local function fails(text, opts)
  local v, msg, code = yaml.decode(text, opts)
  assert.is_nil(v)
  assert.are.equal("EYAML", code)
  assert.are.equal("string", type(msg))
  return msg
end

describe("tide.yaml", function()
  describe("decode", function()
    it("reads mappings, sequences and nested collections", function()
      local v = yaml.decode("name: web\nsteps:\n  - build\n  - {run: make, retries: 2}\n")
      assert.are.same({ name = "web", steps = { "build", { run = "make", retries = 2 } } }, v)
    end)

    it("returns the first document, and a where object", function()
      local v, where = yaml.decode("a: 1\n---\nb: 2\n")
      assert.are.same({ a = 1 }, v)
      assert.are.equal("userdata", type(where))
      assert.matches("^tide.yaml.Where", tostring(where))
    end)

    it("reads an empty stream or empty document as yaml.null", function()
      assert.are.equal(yaml.null, (yaml.decode("")))
      assert.are.equal(yaml.null, (yaml.decode("# nothing here\n")))
      assert.are.equal(yaml.null, (yaml.decode("---\n")))
    end)

    it("reads top-level scalars", function()
      assert.are.equal("hello", (yaml.decode("hello")))
      assert.are.equal(42, (yaml.decode("42")))
      assert.are.equal(true, (yaml.decode("yes")))
    end)

    it("decode_all returns every document", function()
      local docs, where = yaml.decode_all("a: 1\n---\n- x\n--- plain\n---\n")
      assert.are.same({ { a = 1 }, { "x" }, "plain", yaml.null }, docs)
      assert.are.same({ 3, 1 }, { where:at(docs[2]) })
      assert.are.same({}, (yaml.decode_all("")))
    end)

    it("keeps CRLF files and trailing comments out of values", function()
      local v = yaml.decode("a: x  # comment\r\nb: 'y' # more\r\nc: s#t\r\n")
      assert.are.same({ a = "x", b = "y", c = "s#t" }, v)
    end)

    it("shares one table between an anchor and its aliases", function()
      local v = yaml.decode("base: &b {x: 1}\nuse: *b\nname: &n hi\ncopy: *n\n")
      assert.are.equal(v.base, v.use)
      assert.are.same({ x = 1 }, v.use)
      assert.are.equal("hi", v.copy)
    end)
  end)

  describe("scalar resolution", function()
    -- text written plain -> expected Lua value, and for numbers the math.type.
    local cases = {
      { "~", yaml.null }, { "null", yaml.null }, { "Null", yaml.null }, { "NULL", yaml.null },
      { "", yaml.null }, { "nul", "nul" }, { "none", "none" },
      { "true", true }, { "True", true }, { "TRUE", true }, { "yes", true }, { "Yes", true },
      { "YES", true }, { "on", true }, { "On", true }, { "ON", true },
      { "false", false }, { "False", false }, { "FALSE", false }, { "no", false },
      { "No", false }, { "NO", false }, { "off", false }, { "Off", false }, { "OFF", false },
      { "y", "y" }, { "n", "n" }, { "Y", "Y" }, { "N", "N" }, { "tRue", "tRue" },
      { "0", 0, "integer" }, { "42", 42, "integer" }, { "-17", -17, "integer" },
      { "+5", 5, "integer" }, { "0x1f", 31, "integer" }, { "0o17", 15, "integer" },
      { "9223372036854775807", math.maxinteger, "integer" },
      { "-9223372036854775808", math.mininteger, "integer" },
      { "9223372036854775808", 9223372036854775808.0, "float" },
      { "0755", "0755" }, { "1_000", "1_000" }, { "0x", "0x" }, { "-0x1", "-0x1" },
      { "0.2", 0.2, "float" }, { "3.10", 3.1, "float" }, { "6.0", 6.0, "float" },
      { "1e3", 1000.0, "float" }, { "-1.5E-2", -0.015, "float" }, { ".5", 0.5, "float" },
      { "5.", 5.0, "float" }, { ".inf", math.huge, "float" }, { "-.Inf", -math.huge, "float" },
      { "+.INF", math.huge, "float" },
      { "1.2.3", "1.2.3" }, { "2024-01-01", "2024-01-01" }, { "12:30", "12:30" },
      { "e5", "e5" }, { ".", "." }, { "hello world", "hello world" },
    }
    for _, c in ipairs(cases) do
      it(("reads plain '%s' as %s"):format(c[1], tostring(c[2])), function()
        local v = yaml.decode("v: " .. c[1] .. "\n").v
        assert.are.equal(c[2], v)
        if c[3] then
          assert.are.equal(c[3], math.type(v))
        end
      end)
    end

    it("reads .nan as NaN", function()
      local v = yaml.decode("v: .NaN").v
      assert.is_true(v ~= v)
    end)

    it("keeps quoted and block scalars as strings", function()
      local v = yaml.decode("a: '1'\nb: \"true\"\nc: |\n  null\nd: >-\n  3\ne: ''\n")
      assert.are.same({ a = "1", b = "true", c = "null\n", d = "3", e = "" }, v)
    end)

    it("honours explicit standard tags", function()
      local v = yaml.decode(
        "s: !!str 12\ni: !!int '0012'\nf: !!float 1\nb: !!bool 'off'\nn: !!null ''\nh: !!int 0x10\n"
      )
      assert.are.equal("12", v.s)
      assert.are.equal(12, v.i)
      assert.are.equal("integer", math.type(v.i))
      assert.are.equal("float", math.type(v.f))
      assert.are.equal(1.0, v.f)
      assert.are.equal(false, v.b)
      assert.are.equal(yaml.null, v.n)
      assert.are.equal(16, v.h)
    end)

    it("keeps unknown tags' scalars as strings and records the tag", function()
      local v, where = yaml.decode("Bucket: !Ref MyBucket\nPort: !Sub 80\nArn: !GetAtt [R, Arn]\n")
      assert.are.equal("MyBucket", v.Bucket)
      assert.are.equal("80", v.Port)
      assert.are.same({ "R", "Arn" }, v.Arn)
      assert.are.equal("!Ref", where:tag(v, "Bucket"))
      assert.are.equal("!Sub", where:tag(v, "Port"))
      assert.are.equal("!GetAtt", where:tag(v, "Arn"))
      assert.are.equal("!GetAtt", where:tag(v.Arn))
    end)

    it("rejects standard tags that do not fit", function()
      assert.are.equal("<string>:1:4: invalid !!int value 'abc'", fails("x: !!int abc"))
      assert.are.equal("<string>:1:4: invalid !!bool value 'y'", fails("x: !!bool y"))
      assert.are.equal("<string>:1:4: tag '!!map' cannot apply to a sequence", fails("x: !!map []"))
    end)

    it("keeps mapping keys as the strings written", function()
      local v = yaml.decode("1: a\ntrue: b\n~: c\n0.2: d\n'x': e\n")
      assert.are.same({ ["1"] = "a", ["true"] = "b", ["~"] = "c", ["0.2"] = "d", x = "e" }, v)
    end)
  end)

  describe("yaml.null", function()
    it("is lightuserdata NULL and keeps the key present", function()
      assert.are.equal("userdata", type(yaml.null))
      local v = yaml.decode("a: ~\nb:\n")
      assert.are.equal(yaml.null, v.a)
      assert.are.equal(yaml.null, v.b)
      assert.is_not_nil(next(v))
    end)

    it("is json.null", function()
      local ok, json = pcall(require, "tide.json")
      if not ok then
        ok, json = pcall(require, "cjson")
      end
      if not ok then
        pending("no JSON module in this interpreter")
        return
      end
      assert.are.equal(json.null, yaml.null)
    end)
  end)

  describe("where", function()
    local text = table.concat({
      "version: 0.2",
      "env:",
      "  variables:",
      "    PY: 3.10",
      "    NAME: 'app'",
      "phases:",
      "  build:",
      "    commands:",
      "      - make",
      "      - make test",
      "",
    }, "\n")

    it("gives positions of tables, values and keys", function()
      local v, where = yaml.decode(text, { name = "buildspec.yml" })
      assert.are.same({ 1, 1 }, { where:at(v) })
      assert.are.same({ 1, 10 }, { where:at(v, "version") })
      assert.are.same({ 1, 1 }, { where:key_at(v, "version") })
      assert.are.same({ 3, 3 }, { where:at(v.env) })
      assert.are.same({ 4, 9 }, { where:at(v.env.variables, "PY") })
      assert.are.same({ 4, 5 }, { where:key_at(v.env.variables, "PY") })
      assert.are.same({ 5, 11 }, { where:at(v.env.variables, "NAME") })
      local cmds = v.phases.build.commands
      assert.are.same({ 9, 7 }, { where:at(cmds) })
      assert.are.same({ 10, 9 }, { where:at(cmds, 2) })
      assert.are.same({ 10, 9 }, { where:key_at(cmds, 2) })
      assert.are.same({ 10, 9 }, { where:at(cmds, 2.0) })
    end)

    it("returns nil for unknown tables and keys", function()
      local v, where = yaml.decode(text)
      assert.is_nil(where:at({}))
      assert.is_nil(where:at(v, "nope"))
      assert.is_nil(where:key_at(v, "nope"))
      assert.is_nil(where:at(v.phases.build.commands, 3))
      assert.is_nil(where:at(v.phases.build.commands, 0))
      assert.is_nil(where:at(v.phases.build.commands, "1"))
      assert.is_nil(where:at(v, 1))
      assert.is_nil(where:raw(v, "env"))
      assert.is_nil(where:keys({}))
      local _, other = yaml.decode(text)
      assert.is_nil(other:at(v))
    end)

    it("gives scalar text as written", function()
      local v, where = yaml.decode(text .. "rt:\n  dotnet: 6.0\n  node: 22\n  s: \"a\\tb\"\n")
      assert.are.equal(0.2, v.version)
      assert.are.equal("0.2", where:raw(v, "version"))
      assert.are.equal(3.1, v.env.variables.PY)
      assert.are.equal("3.10", where:raw(v.env.variables, "PY"))
      assert.are.equal("6.0", where:raw(v.rt, "dotnet"))
      assert.are.equal("22", where:raw(v.rt, "node"))
      assert.are.equal("a\tb", where:raw(v.rt, "s"))
      assert.are.equal("make test", where:raw(v.phases.build.commands, 2))
    end)

    it("lists keys in document order", function()
      local v, where = yaml.decode("z: 1\na: 2\nm: [x, y, z]\n")
      assert.are.same({ "z", "a", "m" }, where:keys(v))
      assert.are.same({ 1, 2, 3 }, where:keys(v.m))
    end)

    it("reports tags in short form", function()
      local v, where = yaml.decode("a: !!str 1\nb: 2\n")
      assert.are.equal("!!str", where:tag(v, "a"))
      assert.is_nil(where:tag(v, "b"))
      assert.is_nil(where:tag(v))
    end)

    it("holds the decoded tables only weakly", function()
      local v, where = yaml.decode("a: {b: [1, 2]}\n")
      local weak = setmetatable({ v, v.a, v.a.b }, { __mode = "v" })
      v = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      assert.is_nil(next(weak))
      assert.are.equal("userdata", type(where))
    end)

    it("validates its arguments", function()
      local v, where = yaml.decode("a: 1\n")
      assert.has_error(function()
        where:at("a")
      end)
      assert.has_error(function()
        where:key_at(v)
      end)
      assert.has_error(function()
        where.at({}, v)
      end)
    end)
  end)

  describe("bad input", function()
    it("returns nil, NAME:LINE:COL: message, EYAML", function()
      local v, msg, code = yaml.decode("a: 1\nb: [1, 2\n", { name = "ci/buildspec.yml" })
      assert.is_nil(v)
      assert.are.equal("EYAML", code)
      assert.are.equal(
        "ci/buildspec.yml:3:1: did not find expected ',' or ']'"
          .. " (while parsing a flow sequence at 2:4)",
        msg
      )
      assert.matches("^<string>:", fails("[", nil))
      local docs, msg2, code2 = yaml.decode_all("a: 1\n---\n: : :\n")
      assert.is_nil(docs)
      assert.are.equal("EYAML", code2)
      assert.matches("^<string>:3:", msg2)
    end)

    it("refuses duplicate keys", function()
      local msg = fails("a: 1\nb: 2\na: 3\n")
      assert.are.equal("<string>:3:1: duplicate key 'a' (first at 1:1)", msg)
      assert.are.equal("<string>:2:1: duplicate key 'a' (first at 1:1)", fails("a: 1\n\"a\": 2\n"))
    end)

    it("refuses keys that are not scalars", function()
      assert.are.equal(
        "<string>:1:3: mapping key must be a scalar, not a sequence",
        fails("? [a]\n: b\n")
      )
    end)

    it("refuses undefined and recursive aliases", function()
      assert.are.equal("<string>:1:4: alias '*x' refers to an undefined anchor", fails("a: *x\n"))
      local msg = fails("&a [*a]")
      assert.are.equal("<string>:1:5: alias '*a' refers to a node that contains it", msg)
    end)

    it("refuses nesting deeper than 256", function()
      assert.are.equal("table", type(yaml.decode(("["):rep(256) .. ("]"):rep(256))))
      assert.are.equal(
        "<string>:1:257: nesting deeper than 256 levels",
        fails(("["):rep(257) .. ("]"):rep(257))
      )
    end)

    it("refuses alias bombs", function()
      local lines = { "a0: &a0 [x, x, x, x, x, x, x, x, x, x]" }
      for i = 1, 9 do
        local items = ("*a" .. (i - 1) .. ", "):rep(10):sub(1, -3)
        lines[#lines + 1] = ("a%d: &a%d [%s]"):format(i, i, items)
      end
      assert.matches("refusing a possible alias bomb$", fails(table.concat(lines, "\n")))
    end)

    it("refuses tabs, bad UTF-8 and truncated input", function()
      local msg = fails("a:\n\tb: 1\n")
      assert.matches("^<string>:2:1: found character that cannot start any token", msg)
      assert.are.equal("<string>:1:4: invalid leading UTF-8 octet 0xFF", fails("a: \255\n"))
      assert.matches("^<string>:1:8: found unexpected end of stream", fails('a: "abc'))
    end)

    it("fails on every hostile fixture with the message it expects", function()
      local dir = ROOT .. "/spec/fixtures/yaml"
      local names = assert(list(dir), "no fixtures at " .. dir)
      assert.is_true(#names >= 10)
      for _, name in ipairs(names) do
        local text = read(dir .. "/" .. name)
        local want = assert(text:match("^# expect: ([^\n]*)"), name .. " lacks '# expect:'")
        local msg = fails(text, { name = name })
        assert.are.equal(1, msg:find(name, 1, true), msg)
        assert.is_truthy(msg:find(want, 1, true), name .. ": " .. msg)
      end
    end)
  end)

  describe("arguments", function()
    it("are checked strictly", function()
      assert.has_error(function()
        yaml.decode(42)
      end)
      assert.has_error(function()
        yaml.decode()
      end)
      assert.has_error(function()
        yaml.decode("a", "name")
      end)
      assert.has_error(function()
        yaml.decode("a", { nmae = "x" })
      end, "bad argument #2 to 'decode' (unexpected key 'nmae')")
      assert.has_error(function()
        yaml.decode("a", { name = 1 })
      end)
      assert.has_error(function()
        yaml.encode()
      end)
      assert.has_error(function()
        yaml.encode({}, { indent = 1 })
      end)
      assert.has_error(function()
        yaml.encode({}, { width = 80 })
      end)
    end)
  end)

  describe("encode", function()
    it("sorts keys and writes block style", function()
      local text = yaml.encode({
        version = 0.2,
        phases = { build = { commands = { "make", "make test" } } },
        env = { variables = { A = "1", B = "yes", C = "", D = "x" } },
        n = yaml.null,
        t = true,
        e = {},
      })
      assert.are.equal(
        table.concat({
          "e: {}",
          "env:",
          "  variables:",
          "    A: '1'",
          "    B: 'yes'",
          "    C: ''",
          "    D: x",
          "'n': null",
          "phases:",
          "  build:",
          "    commands:",
          "    - make",
          "    - make test",
          "t: true",
          "version: 0.2",
          "",
        }, "\n"),
        text
      )
    end)

    it("quotes strings that would read back as something else", function()
      local strings =
        { "true", "no", "~", "null", "", "12", "0.2", "3.10", ".inf", "0755", "y", "-1" }
      for _, s in ipairs(strings) do
        local text = yaml.encode({ s })
        assert.are.equal("- '", text:sub(1, 3), s)
        assert.are.equal(s, yaml.decode(text)[1])
      end
    end)

    it("writes multi-line strings as literal blocks", function()
      assert.are.equal("cmd: |-\n  one\n  two\n", yaml.encode({ cmd = "one\ntwo" }))
    end)

    it("writes scalars at the top level", function()
      assert.are.equal("null\n", yaml.encode(nil))
      assert.are.equal("null\n", yaml.encode(yaml.null))
      assert.are.equal("42\n", yaml.encode(42))
      assert.are.equal("1.0\n", yaml.encode(1.0))
      assert.are.equal("-.inf\n", yaml.encode(-math.huge))
      assert.are.equal("false\n", yaml.encode(false))
    end)

    it("honours indent", function()
      assert.are.equal("a:\n    b: 1\n", yaml.encode({ a = { b = 1 } }, { indent = 4 }))
    end)

    it("round-trips through decode", function()
      local values = {
        { a = 1, b = { 1.5, "x", true, false, yaml.null }, c = { d = { e = "f" } } },
        { "0.2", "3.10", "6.0", "1.2.3", "yes", "on", "~", "", " lead", "trail ", "a: b", "#c" },
        { s = "multi\nline\n", t = "tab\there", u = "h\195\169 \228\184\173", q = "'\"" },
        { math.maxinteger, math.mininteger, 0.1, 1e300, -0.0, 3.0, 2 ^ 53 },
        { ["key with: colon"] = 1, ["- dash"] = 2, ["?"] = 3, ["true"] = 4, ["1"] = 5 },
      }
      for _, v in ipairs(values) do
        local text = yaml.encode(v)
        local back = yaml.decode(text)
        assert.are.same(v, back, text)
        for k, x in pairs(v) do
          if type(x) == "number" then
            assert.are.equal(math.type(x), math.type(back[k]), text)
          end
        end
      end
    end)

    it("writes number keys as strings", function()
      assert.are.equal("'1': a\n'3': b\n", yaml.encode({ [1] = "a", [3] = "b" }))
      local back = yaml.decode(yaml.encode({ [1] = "a", [3] = "b" }))
      assert.are.same({ ["1"] = "a", ["3"] = "b" }, back)
    end)

    it("encodes a table that appears twice, but not a cycle", function()
      local shared = { x = 1 }
      assert.are.equal("a:\n  x: 1\nb:\n  x: 1\n", yaml.encode({ a = shared, b = shared }))
      local t = { a = {} }
      t.a.back = t
      assert.has_error(function()
        yaml.encode(t)
      end, "yaml.encode: cannot encode a table that contains itself")
    end)

    it("raises for values YAML cannot hold", function()
      assert.has_error(function()
        yaml.encode({ f = print })
      end, "yaml.encode: cannot encode a function")
      assert.has_error(function()
        yaml.encode({ io.stdout })
      end, "yaml.encode: cannot encode a userdata")
      assert.has_error(function()
        yaml.encode(coroutine.create(print))
      end, "yaml.encode: cannot encode a thread")
      assert.has_error(function()
        yaml.encode({ [true] = 1 })
      end, "yaml.encode: cannot encode a boolean key")
      assert.has_error(function()
        yaml.encode({ [1] = "a", ["1"] = "b", x = 1 })
      end, "yaml.encode: two keys are both written '1'")
      local deep = {}
      for _ = 1, 300 do
        deep = { deep }
      end
      assert.has_error(function()
        yaml.encode(deep)
      end, "yaml.encode: nesting deeper than 256 levels")
    end)

    it("returns the fail triple for strings that are not UTF-8", function()
      local text, msg, code = yaml.encode({ a = "\255" })
      assert.is_nil(text)
      assert.are.equal("yaml encode: invalid UTF-8 in a string or tag", msg)
      assert.are.equal("EYAML", code)
    end)
  end)

  describe("the AWS corpus", function()
    it("decodes every buildspec, appspec and SSM YAML file", function()
      -- byte-for-byte copies of the shared corpus, kept with the specs so every checkout has them
      local base = ROOT .. "/spec/fixtures/corpus"
      assert(list(base), "no corpus at " .. base)
      local count = 0
      for _, sub in ipairs({ "buildspec", "appspec", "ssm" }) do
        for _, name in ipairs(list(base .. "/" .. sub) or {}) do
          if name:match("%.ya?ml$") then
            local path = base .. "/" .. sub .. "/" .. name
            local v, where = yaml.decode(read(path), { name = path })
            assert.is_not_nil(v, where)
            assert.are.equal("table", type(v), path)
            if sub ~= "ssm" then
              -- version is always written unquoted, and its text survives as written.
              local versions = { ["0.0"] = true, ["0.1"] = true, ["0.2"] = true }
              assert.is_true(versions[where:raw(v, "version")], path)
            end
            count = count + 1
          end
        end
      end
      assert.is_true(count >= 40, "only " .. count .. " files")
    end)
  end)
end)
