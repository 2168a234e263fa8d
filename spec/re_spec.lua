-- tide.re: PCRE2 regular expressions. Functions, methods, replacement templates, iteration rules
-- and hostile input: bad patterns, catastrophic backtracking, NUL bytes, invalid UTF-8.
local re = require("tide.re")

-- Calls fn and returns the TideError it raises (a table with code and message).
local function raises(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("tide.re", function()
  describe("compile", function()
    it("returns a regex object with methods", function()
      local rx = assert(re.compile("(\\d+)-(\\d+)"))
      assert.matches("^tide.re.Regex", tostring(rx))
      assert.are.same({ "10", "20" }, { rx:match("a 10-20 b") })
      assert.are.same({ "(\\d+)-(\\d+)", "" }, { rx:pattern() })
    end)

    it("returns the fail triple for a bad pattern, naming the offset", function()
      local rx, msg, code = re.compile("ab(c")
      assert.is_nil(rx)
      assert.are.equal("re: bad pattern at offset 4: missing closing parenthesis", msg)
      assert.are.equal("EREGEX", code)
      rx, msg, code = re.compile("a{2,1}")
      assert.is_nil(rx)
      assert.are.equal("EREGEX", code)
      assert.matches("^re: bad pattern at offset %d+: numbers out of order", msg)
    end)

    it("refuses \\C, which could split a UTF-8 character", function()
      local rx, _, code = re.compile("a\\C", "u")
      assert.is_nil(rx)
      assert.are.equal("EREGEX", code)
    end)

    it("reads flags and raises on unknown ones", function()
      assert.are.equal("ABC", re.match("xABCx", "abc", 1, "i"))
      assert.are.equal("b", re.match("a\nb", "^b", 1, "m"))
      assert.is_nil(re.match("a\nb", "^b"))
      assert.are.equal("a\nb", re.match("a\nb", "a.b", 1, "s"))
      assert.are.equal("ab", re.match("ab", "a  b # comment", 1, "x"))
      assert.are.same({ "x", "y" }, { re.match("xy", "(x)(?<n>y)", 1, "") })
      assert.are.equal("y", re.match("xy", "(x)(?<n>y)", 1, "n")) -- only named groups capture
      assert.is_nil(re.match("xa", "a", 1, "A")) -- anchored
      assert.are.equal("aa", re.match("aaa", "a+?a", 1, "")) -- lazy
      assert.are.equal("a", re.match("aaa", "a+", 1, "U")) -- ungreedy
      local ok, err = pcall(re.compile, "a", "iq")
      assert.is_false(ok)
      assert.matches("re: unknown flag 'q'", err)
      assert.has_error(function() re.compile("a", 42) end)
      local rx = re.compile("abc", "ixu")
      assert.are.same({ "abc", "ixu" }, { rx:pattern() })
    end)

    it("raises for a bad pattern type", function()
      assert.has_error(function() re.compile({}) end)
      assert.has_error(function() re.compile() end)
    end)

    it("reports groups and names", function()
      local n, names = re.compile("(?<year>\\d{4})-(\\d\\d)(?<day>-\\d\\d)?"):groups()
      assert.are.equal(3, n)
      assert.are.same({ year = 1, day = 3 }, names)
    end)
  end)

  describe("match and find", function()
    it("behave like string.match and string.find", function()
      assert.are.equal("123", re.match("abc123def", "\\d+"))
      assert.are.same({ "k", "v" }, { re.match("k=v", "(\\w)=(\\w)") })
      assert.is_nil(re.match("abc", "\\d"))
      assert.are.same({ 4, 6 }, { re.find("abc123def", "\\d+") })
      assert.are.same({ 1, 3, "k", "v" }, { re.find("k=v", "(\\w)=(\\w)") })
      assert.is_nil(re.find("abc", "x"))
      -- the same answers as Lua's own patterns for the same question
      local s = "  key = value  "
      assert.are.same({ string.find(s, "%w+") }, { re.find(s, "\\w+") })
    end)

    it("take init like string.find, negative from the end", function()
      assert.are.same({ 5, 5 }, { re.find("abcabc", "b", 3) })
      assert.are.same({ 5, 5 }, { re.find("abcabc", "b", -2) })
      assert.are.same({ 2, 2 }, { re.find("abcabc", "b", -100) })
      assert.are.same({ 7, 6 }, { re.find("abcabc", "$", 7) })
      assert.is_nil(re.find("abcabc", "", 8))
      assert.are.equal("c", re.match("abc", ".", 3))
    end)

    it("give false for an optional group that did not take part", function()
      assert.are.same({ "a", false, "c" }, { re.match("ac", "(a)(b)?(c)") })
      assert.are.same({ 1, 2, "a", false, "c" }, { re.find("ac", "(a)(b)?(c)") })
    end)

    it("treat NUL bytes in subject and pattern as ordinary characters", function()
      assert.are.equal("b\0c", re.match("a\0b\0c", "b\\x00c"))
      assert.are.equal("\0\0", re.match("x\0\0y", "\0+"))
      assert.are.same({ 2, 3 }, { re.find("a\0\0b", "\\0+") })
    end)

    it("accept a compiled regex in place of a pattern, but then no flags", function()
      local rx = re.compile("b+")
      assert.are.equal("bb", re.match("abbc", rx))
      assert.are.same({ 2, 3 }, { re.find("abbc", rx) })
      local ok, err = pcall(re.match, "abbc", rx, 1, "i")
      assert.is_false(ok)
      assert.matches("flags cannot be given with a compiled regex", err)
    end)

    it("raise for a bad subject type", function()
      assert.has_error(function() re.match({}, "a") end)
      assert.has_error(function() re.find(nil, "a") end)
      assert.has_error(function() re.compile("a"):match(true) end)
      assert.are.equal("12", re.match(123, "\\d\\d")) -- numbers are strings, as in string.match
    end)

    it("raise an EREGEX TideError for a bad pattern in the convenience functions", function()
      for _, fn in ipairs({ re.match, re.find, re.exec, re.split, re.gmatch }) do
        local err = raises(fn, "subject", "a(")
        assert.are.equal("EREGEX", err.code)
        assert.are.equal("re: bad pattern at offset 2: missing closing parenthesis", err.message)
      end
      local err = raises(re.gsub, "subject", "[", "x")
      assert.are.equal("EREGEX", err.code)
      assert.matches("^re: bad pattern at offset 1: missing terminating %]", err.message)
    end)
  end)

  describe("hostile patterns and subjects", function()
    it("stops catastrophic backtracking with ELIMIT instead of hanging", function()
      local subject = string.rep("a", 5000) .. "!"
      local t0 = os.clock()
      local err = raises(re.match, subject, "(a+)+$")
      assert.are.equal("ELIMIT", err.code)
      assert.matches("limit", err.message)
      err = raises(re.gsub, subject, "(x+x+)+y|(a|aa)+$", "")
      assert.are.equal("ELIMIT", err.code)
      assert.is_true(os.clock() - t0 < 10)
    end)

    it("survives deep nesting in patterns and long subjects", function()
      local rx, _, code = re.compile(string.rep("(", 5000) .. string.rep(")", 5000))
      assert.is_nil(rx)
      assert.are.equal("EREGEX", code) -- parentheses nested too deeply
      local long = string.rep("ab", 500000)
      assert.are.equal(1000000, #re.match(long, "(?:ab)*"))
      local _, n = re.gsub(long, "b", "")
      assert.are.equal(500000, n)
    end)

    it("checks UTF-8 under the u flag", function()
      assert.are.equal("héllo", re.match("  héllo", "\\w+", 1, "u"))
      assert.are.equal("h", re.match("  héllo", "\\w+")) -- bytes without u
      local err = raises(re.match, "ab\xffcd", "c", 1, "u")
      assert.are.equal("EREGEX", err.code)
      assert.matches("^re: invalid UTF%-8 in subject at offset 2", err.message)
      err = raises(re.find, "é", "x", 2, "u")
      assert.are.equal("re: start offset 1 is inside a UTF-8 character", err.message)
      local rx, msg = re.compile("\xff", "u")
      assert.is_nil(rx)
      assert.matches("^re: bad pattern at offset 0: UTF%-8 error", msg)
      -- without u, the same bytes are data
      assert.are.equal("\xff", re.match("ab\xffcd", "\xff"))
    end)

    it("iterates UTF-8 subjects by characters on empty matches", function()
      local out = {}
      for m in re.gmatch("éa", "", 1, "u") do
        out[#out + 1] = m
      end
      assert.are.equal(3, #out) -- before é, before a, at the end
      assert.are.equal("[é][a]", (re.gsub("éa", "(.)", "[$1]", nil, "u")))
      assert.are.equal("[\xc3][\xa9][a]", (re.gsub("éa", "(.)", "[$1]")))
      assert.are.equal("-é-a-", (re.gsub("éa", "", "-", nil, "u")))
    end)
  end)

  describe("gmatch", function()
    it("iterates over matches, giving captures when there are some", function()
      local words = {}
      for w in re.gmatch("one two  three", "\\w+") do
        words[#words + 1] = w
      end
      assert.are.same({ "one", "two", "three" }, words)
      local pairs_ = {}
      for k, v in re.gmatch("a=1, b=2", "(\\w)=(\\d)") do
        pairs_[#pairs_ + 1] = k .. v
      end
      assert.are.same({ "a1", "b2" }, pairs_)
    end)

    it("follows Perl's rules for empty matches", function()
      local got = {}
      for m in re.gmatch("axb", "x*") do
        got[#got + 1] = m
      end
      assert.are.same({ "", "x", "", "" }, got)
    end)

    it("works as a method and with init", function()
      local rx = re.compile("\\d")
      local got = {}
      for d in rx:gmatch("1a2b3", 2) do
        got[#got + 1] = d
      end
      assert.are.same({ "2", "3" }, got)
      for _ in rx:gmatch("123", 10) do
        error("no match expected past the end")
      end
    end)
  end)

  describe("gsub", function()
    it("expands $0, $N, ${N}, ${name} and $$ in a string replacement", function()
      assert.are.same({ "<a=1> <b=2>", 2 }, { re.gsub("a=1 b=2", "\\w=\\d", "<$0>") })
      assert.are.same({ "1=a", 1 }, { re.gsub("a=1", "(\\w)=(\\d)", "$2=$1") })
      assert.are.equal("a0", (re.gsub("a", "(a)", "${1}0")))
      assert.are.equal("v:k", (re.gsub("k=v", "(?<key>\\w)=(?<val>\\w)", "${val}:${key}")))
      assert.are.equal("$5", (re.gsub("5", "\\d", "$$$0")))
      assert.are.equal("ac", (re.gsub("ac", "(a)(b)?(c)", "$1$2$3"))) -- unset group: empty
    end)

    it("raises for a template that names a missing group or misuses $", function()
      assert.has_error(function() re.gsub("a", "(a)", "$2") end)
      assert.has_error(function() re.gsub("a", "(a)", "$12") end)
      assert.has_error(function() re.gsub("a", "(a)", "${nope}") end)
      assert.has_error(function() re.gsub("a", "(a)", "${1") end)
      assert.has_error(function() re.gsub("a", "(a)", "cost: $") end)
      assert.has_error(function() re.gsub("a", "(a)", "$x") end)
      assert.has_error(function() re.gsub("a", "a", true) end)
    end)

    it("takes a table keyed by the first capture or the whole match", function()
      local vars = { HOME = "/home/me", USER = "me" }
      assert.are.equal("/home/me is me's, $NONE stays",
        (re.gsub("$HOME is $USER's, $NONE stays", "\\$(\\w+)", vars)))
      assert.are.equal("1 2 x", (re.gsub("one two x", "\\w+", { one = 1, two = "2" })))
      assert.has_error(function() re.gsub("a", "a", { a = {} }) end)
    end)

    it("takes a function; false or nil keeps the match", function()
      local s, n = re.gsub("a1b22", "\\d+", function(d) return "<" .. #d .. ">" end)
      assert.are.same({ "a<1>b<2>", 2 }, { s, n })
      assert.are.equal("AbC", (re.gsub("abc", "\\w", function(c)
        if c ~= "b" then return c:upper() end
      end)))
      assert.are.equal("x", (re.gsub("a", "(a)(b)?", function(a, b)
        assert.are.equal("a", a)
        assert.is_false(b)
        return "x"
      end)))
      local err = raises(re.gsub, "a", "a", function() error("boom") end)
      assert.matches("boom", err)
    end)

    it("runs the function under a C call, where it cannot block", function()
      local tide = require("tide")
      local err = raises(re.gsub, "a", "a", function() tide.sleep(0) end)
      assert.matches("cannot block here", tostring(err))
    end)

    it("limits the number of replacements with n", function()
      assert.are.same({ "xxa", 2 }, { re.gsub("aaa", "a", "x", 2) })
      assert.are.same({ "aaa", 0 }, { re.gsub("aaa", "a", "x", 0) })
      assert.are.same({ "xxx", 3 }, { re.compile("a"):gsub("aaa", "x") })
    end)

    it("replaces empty matches the Perl way", function()
      assert.are.equal("-a--b-", (re.gsub("axb", "x*", "-")))
      assert.are.equal("--", (re.gsub("abc", "\\w*", "-")))
    end)
  end)

  describe("split", function()
    it("splits on a pattern, keeping empty fields between separators", function()
      assert.are.same({ "a", "b", "", "c" }, re.split("a,b,,c", ","))
      assert.are.same({ "", "a", "" }, re.split(",a,", ","))
      assert.are.same({ "a", "b", "c" }, re.split("a  b\tc", "\\s+"))
      assert.are.same({ "" }, re.split("", ","))
      assert.are.same({ "abc" }, re.split("abc", ","))
    end)

    it("never makes empty pieces from empty matches", function()
      assert.are.same({ "a", "b", "c" }, re.split("abc", ""))
      assert.are.same({ "a", "b" }, re.split("a,b", ",?"))
    end)

    it("stops at max pieces", function()
      assert.are.same({ "a", "b,c" }, re.split("a,b,c", ",", 2))
      assert.are.same({ "a,b,c" }, re.compile(","):split("a,b,c", 1))
      assert.has_error(function() re.split("a", ",", 0) end)
    end)
  end)

  describe("exec", function()
    it("returns whole match, numbered and named groups and the span", function()
      local m = re.exec("on 2024-05-17.", "(?<y>\\d{4})-(?<m>\\d\\d)-(\\d\\d)(x)?")
      assert.are.same({
        [0] = "2024-05-17", "2024", "05", "17", false,
        y = "2024", m = "05", start = 4, stop = 13,
      }, m)
      assert.is_nil(re.exec("abc", "\\d"))
      assert.are.equal(3, re.compile("c"):exec("abcabc", 2).start)
    end)
  end)

  describe("escape", function()
    it("quotes every special character", function()
      local s = "a.b*c?(d)[e]{f}|g^h$i\\j+k/l m#\0n"
      assert.are.equal(s, re.match(s, re.escape(s)))
      assert.are.equal(s, re.match(s, re.escape(s), 1, "x"))
      assert.are.equal("é", re.escape("é"))
    end)
  end)

  describe("the compile cache", function()
    it("keeps working past its size with many distinct patterns", function()
      for i = 1, 600 do
        assert.are.equal(tostring(i), re.match("x" .. i .. "y", "x(" .. i .. ")y"))
      end
      collectgarbage()
      assert.are.equal("7", re.match("x7y", "x(7)y"))
    end)
  end)
end)
