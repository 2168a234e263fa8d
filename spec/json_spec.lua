-- tide.json: lua-cjson decoding, tide's encoder (compact and pretty), json.null, json.array and
-- hostile input: malformed text, deep nesting, cycles, NUL bytes, huge numbers.
local json = require("tide.json")

-- Decodes text that must fail; returns the message after checking the triple's shape.
local function fails(text)
  local v, msg, code = json.decode(text)
  assert.is_nil(v)
  assert.are.equal("EJSON", code)
  assert.are.equal("string", type(msg))
  assert.matches("^json: ", msg)
  return msg
end

describe("tide.json", function()
  describe("decode", function()
    it("reads objects, arrays and scalars", function()
      assert.are.same({ a = { 1, 2, 3 }, b = { c = "d" }, e = true, f = false },
        json.decode('{"a":[1,2,3],"b":{"c":"d"},"e":true,"f":false}'))
      assert.are.equal("x", json.decode('"x"'))
      assert.are.equal(json.null, json.decode("null"))
    end)

    it("gives integers for integral numbers and floats for the rest", function()
      local t = json.decode("[1, -7, 2.5, 1e3, 1.0, 1e300, 123456789012345678]")
      assert.are.equal("integer", math.type(t[1]))
      assert.are.equal(-7, t[2])
      assert.are.equal("float", math.type(t[3]))
      assert.are.equal(1000, t[4])
      assert.are.equal("integer", math.type(t[4]))
      assert.are.equal("integer", math.type(t[5]))
      assert.are.equal("float", math.type(t[6])) -- beyond 2^53: left a float
      assert.are.equal("float", math.type(t[7]))
    end)

    it("keeps null as json.null so keys stay present", function()
      local t = json.decode('{"a":null,"b":[null,1]}')
      assert.are.equal(json.null, t.a)
      assert.are.equal(json.null, t.b[1])
      assert.are.equal(2, #t.b)
      assert.are.equal("userdata", type(json.null))
    end)

    it("marks decoded empty arrays so that they encode back as []", function()
      local t = json.decode('{"a":[],"b":{},"c":[ \n ],"d":"[]","e":[[]]}')
      assert.is_true(json.is_array(t.a))
      assert.is_false(json.is_array(t.b))
      assert.is_true(json.is_array(t.c))
      assert.are.equal("[]", t.d) -- inside a string: untouched
      assert.is_true(json.is_array(t.e[1]))
      assert.are.equal('{"a":[],"b":{},"c":[],"d":"[]","e":[[]]}',
        json.encode(t, { sort_keys = true }))
      assert.is_true(json.is_array(json.decode("[]")))
      assert.are.equal("[]", json.encode(json.decode("  [ ]  ")))
      -- escaped quotes do not confuse the scan
      assert.are.same({ 'a"[]', {} }, json.decode('["a\\"[]", []]'))
    end)

    it("keeps NUL bytes and escapes in strings", function()
      assert.are.equal("a\0b", json.decode('"a\\u0000b"'))
      assert.are.equal("é€", json.decode('"\\u00e9\\u20ac"'))
      assert.are.equal("\u{1F600}", json.decode('"\\ud83d\\ude00"'))
    end)

    it("returns the fail triple for malformed text, with cjson's message", function()
      assert.are.equal("json: Expected value but found T_END at character 4", fails("[1,"))
      fails("")
      fails("{")
      fails("{'a':1}")
      fails('{"a" 1}')
      fails("[1,]")
      fails("tru")
      fails('"unterminated')
      fails("[1] x")
      fails("NaN")      -- not JSON: refused
      fails("Infinity")
      fails("0x10")
      fails("\0")
      -- a position in the caller's text even when empty arrays were rewritten first
      assert.are.equal("json: Expected value but found T_END at character 9", fails("[[], [],"))
    end)

    it("refuses deep nesting instead of exhausting the stack", function()
      local msg = fails(string.rep("[", 100000))
      assert.matches("too many nested data structures", msg)
      msg = fails(string.rep('{"a":', 5000) .. "1" .. string.rep("}", 5000))
      assert.matches("too many nested", msg)
      msg = fails(string.rep("[", 1001) .. string.rep("]", 1001))
      assert.matches("too many nested", msg)
      local v = json.decode(string.rep("[", 999) .. string.rep("]", 999))
      assert.are.equal("table", type(v))
    end)

    it("survives random garbage", function()
      math.randomseed(42)
      for _ = 1, 2000 do
        local n = math.random(0, 40)
        local bytes = {}
        for i = 1, n do
          bytes[i] = string.char(math.random(0, 255))
        end
        local text = table.concat(bytes)
        local v, msg, code = json.decode(text)
        assert.is_true(v ~= nil or (code == "EJSON" and type(msg) == "string"))
      end
      for _ = 1, 2000 do
        local alphabet = '[]{}",:0123456789.eE+-tfnul \\'
        local chars = {}
        for i = 1, math.random(0, 30) do
          local k = math.random(1, #alphabet)
          chars[i] = alphabet:sub(k, k)
        end
        local v, _, code = json.decode(table.concat(chars))
        assert.is_true(v ~= nil or code == "EJSON")
      end
    end)

    it("raises for a non-string argument", function()
      assert.has_error(function() json.decode({}) end)
      assert.has_error(function() json.decode() end)
    end)
  end)

  describe("encode", function()
    it("writes compact JSON", function()
      assert.are.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
      assert.are.equal('{"a":1}', json.encode({ a = 1 }))
      assert.are.equal("null", json.encode(nil))
      assert.are.equal("null", json.encode(json.null))
      assert.are.equal("true", json.encode(true))
      assert.are.equal('"x"', json.encode("x"))
      assert.are.equal("3", json.encode(3))
      assert.are.equal("0.1", json.encode(0.1))
      assert.are.equal("1e+300", json.encode(1e300))
      assert.are.equal("-0", json.encode(-0.0))
      assert.are.equal("9223372036854775807", json.encode(math.maxinteger))
    end)

    it("writes floats that read back exactly", function()
      for _, x in ipairs({ 0.1, 1 / 3, 2 ^ 0.5, 1e-310, 123456.789, -2.5e-8 }) do
        assert.are.equal(x, json.decode(json.encode(x)))
      end
    end)

    it("escapes strings and keeps NUL bytes", function()
      assert.are.equal('"a\\"b\\\\c\\n\\t\\r\\b\\f\\u0001\\u0000/"',
        json.encode('a"b\\c\n\t\r\b\f\1\0/'))
      local s = "nul\0inside"
      assert.are.equal(s, json.decode(json.encode(s)))
      assert.are.equal('"é"', json.encode("é")) -- UTF-8 passes through
    end)

    it("writes pretty JSON with sorted keys", function()
      local v = { b = { 1, { c = json.array() } }, a = {}, z = "x" }
      local text = json.encode(v, { pretty = true })
      assert.are.equal('{\n  "a": {},\n  "b": [\n    1,\n    {\n      "c": []\n    }\n  ],\n' ..
        '  "z": "x"\n}', text)
    end)

    it("sorts keys on request and bytewise", function()
      local t = { b = 1, a = 2, B = 3, aa = 4, [""] = 5 }
      assert.are.equal('{"":5,"B":3,"a":2,"aa":4,"b":1}', json.encode(t, { sort_keys = true }))
      assert.are.equal('{"a":1}', json.encode({ a = 1 }, { pretty = false, sort_keys = true }))
    end)

    it("encodes {} as an object and json.array marks as arrays", function()
      assert.are.equal("{}", json.encode({}))
      assert.are.equal("[]", json.encode(json.array()))
      assert.are.equal("[]", json.encode(json.array({})))
      assert.are.equal("[1,2]", json.encode(json.array({ 1, 2 })))
      local t = json.array({ 1, 2, x = "ignored" })
      assert.are.equal("[1,2]", json.encode(t))
      assert.is_true(json.is_array(t))
      assert.are.equal(json.array_mt, getmetatable(t))
      assert.has_error(function() json.array(setmetatable({}, {})) end)
      assert.has_error(function() json.array("x") end)
    end)

    it("writes number keys as strings and holes as null", function()
      assert.are.equal('{"1":"a","x":"b"}', json.encode({ "a", x = "b" }, { sort_keys = true }))
      assert.are.equal("[1,null,3]", json.encode({ 1, nil, 3 }))
      assert.are.equal('{"1.5":true}', json.encode({ [1.5] = true }))
    end)

    it("raises for what JSON cannot hold", function()
      assert.has_error(function() json.encode(print) end,
        "json: cannot encode a value of type function")
      assert.has_error(function() json.encode({ [true] = 1 }) end,
        "json: cannot encode a table key of type boolean")
      assert.has_error(function() json.encode(0 / 0) end, "json: cannot encode NaN")
      assert.has_error(function() json.encode(math.huge) end, "json: cannot encode infinity")
      assert.has_error(function() json.encode({ [1000] = 1 }) end,
        "json: cannot encode an excessively sparse array")
      assert.has_error(function() json.encode(coroutine.create(print)) end)
      assert.has_error(function() json.encode(io.stdout) end)
    end)

    it("raises on cycles and deep nesting instead of overflowing", function()
      local t = {}
      t.self = t
      local ok, err = pcall(json.encode, t)
      assert.is_false(ok)
      assert.matches("nesting deeper than 1000", err)
      local deep = {}
      local cur = deep
      for _ = 1, 5000 do
        cur[1] = {}
        cur = cur[1]
      end
      assert.has_error(function() json.encode(deep) end)
      -- a table used twice side by side is fine
      local shared = { 1 }
      assert.are.equal("[[1],[1]]", json.encode({ shared, shared }))
    end)

    it("rejects unknown options", function()
      assert.has_error(function() json.encode({}, { indent = 2 }) end)
      assert.has_error(function() json.encode({}, { pretty = "yes" }) end)
      assert.has_error(function() json.encode({}, "pretty") end)
    end)

    it("round-trips through decode", function()
      local v = { name = "web", steps = { { run = "make", retries = 2 }, { run = "test" } },
        empty = json.array(), obj = {}, n = json.null, f = 1.5, unicode = "héllo ✓" }
      local text = json.encode(v, { pretty = true })
      local back = json.decode(text)
      assert.are.same(v, back)
      assert.are.equal(text, json.encode(back, { pretty = true }))
    end)
  end)
end)
