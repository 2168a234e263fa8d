-- tide.reports: every format on files as the real tools write them, edge cases, hostile input,
-- the record/list round trip through the state store this spec run has open, and the
-- `tide reports` command on a fresh home.
local helper = require("helper")
local json = require("tide.json")
local tide = require("tide")
local reports = require("tide.reports")
local common = require("tide.reports.common")

local FIX = (os.getenv("TIDE_SOURCE_DIR") or ".") .. "/spec/fixtures/reports/"

local function parse(name, format)
  return reports.parse(FIX .. name, format)
end

-- The cases of a result as "STATUS suite > name" lines, for compact exact comparisons.
local function rows(result)
  local out = {}
  for i, c in ipairs(result.cases) do
    out[i] = string.format("%s %s > %s", c.status, tostring(c.suite), c.name)
  end
  return out
end

local function near(want, got)
  assert.is_truthy(got and math.abs(want - got) < 1e-9, ("expected %s, got %s"):format(want,
    tostring(got)))
end

local function counts(result)
  local s = result.summary
  return { s.total, s.SUCCEEDED, s.FAILED, s.ERROR, s.SKIPPED, s.UNKNOWN }
end

describe("reports.parse: test formats", function()
  it("reads Surefire JUnit XML: failure, error, skipped, flaky retries that passed", function()
    local r = parse("junit-surefire.xml")
    assert.are.equal("test", r.kind)
    assert.are.equal("JUNITXML", r.format)
    assert.are.equal(FIX .. "junit-surefire.xml", r.file)
    assert.are.same({
      "SUCCEEDED com.example.CalculatorTest > addsTwoNumbers",
      "FAILED com.example.CalculatorTest > dividesByZero",
      "ERROR com.example.CalculatorTest > parsesInput",
      "SKIPPED com.example.CalculatorTest > multiplies",
      "SUCCEEDED com.example.CalculatorTest > subtracts",
    }, rows(r))
    assert.are.same({ 5, 2, 1, 1, 1, 0 }, counts(r))
    near(0.052, r.summary.duration)
    near(0.004, r.cases[2].duration)
    -- The body repeats type and message, so it stands alone; the stack trace is kept.
    assert.are.equal("org.opentest4j.AssertionFailedError: expected: <Infinity> but was: <NaN>",
      r.cases[2].message:match("^[^\n]*"))
    assert.is_truthy(r.cases[2].message:find("CalculatorTest.java:31", 1, true))
    assert.is_truthy(r.cases[3].message:find("^java.lang.NullPointerException: Cannot invoke"))
    assert.are.equal("not implemented yet", r.cases[4].message)
    assert.is_nil(r.cases[1].message)
    assert.is_nil(r.cases[5].message)
    assert.are.equal("com.example.CalculatorTest", r.cases[1].prefix)
  end)

  it("reads pytest JUnit XML: setup errors, skip and xfail", function()
    local r = parse("junit-pytest.xml", "junitxml")
    assert.are.same({
      "SUCCEEDED pytest > test_get_user",
      "FAILED pytest > test_create_user",
      "ERROR pytest > test_delete_user",
      "SUCCEEDED pytest > test_user_repr[ana-Ana]",
      "SKIPPED pytest > test_legacy_export",
      "SKIPPED pytest > test_unicode_slug",
    }, rows(r))
    assert.are.equal("tests.test_api", r.cases[2].prefix)
    -- message attribute first, then the body (the traceback pytest prints).
    local m = r.cases[2].message
    assert.are.equal("assert 500 == 201", m:match("^[^\n]*"))
    assert.is_truthy(m:find("tests/test_api.py:14: AssertionError", 1, true))
    assert.is_truthy(r.cases[3].message:find("^failed on setup with \"fixture 'admin' not found\""))
    assert.are.equal("slugify drops accents", r.cases[6].message)
    near(0, r.cases[5].duration)
  end)

  it("reads nested suites, unicode names, odd times; error wins over failure", function()
    local r = parse("junit-nested.xml")
    assert.are.same({
      "SUCCEEDED integration.db > connects",
      "ERROR integration.db > migrates",
      "SUCCEEDED integration > direct child",
      "SUCCEEDED ユニット > größe prüfen 🚀",
      "SUCCEEDED ユニット > bad time",
      "SKIPPED anon.Case > anonymous",
    }, rows(r))
    assert.is_nil(r.cases[2].duration) -- no time attribute
    near(1234.5, r.cases[3].duration) -- "1,234.5"
    assert.is_nil(r.cases[5].duration) -- time="fast"
    assert.are.equal("IOError: teardown failed\ncould not drop schema", r.cases[2].message)
    near(1.5 + 1234.5 + 0.25 + 0.1, r.summary.duration)
  end)

  it("reads NUnit 2 console XML", function()
    local r = parse("nunit2.xml", "NUNITXML")
    assert.are.same({
      "SUCCEEDED Calc.Tests.CalculatorTests > Add",
      "FAILED Calc.Tests.CalculatorTests > Divide",
      "ERROR Calc.Tests.CalculatorTests > Parse",
      "SKIPPED Calc.Tests.CalculatorTests > Power",
      "ERROR Calc.Tests.CalculatorTests > Sqrt",
    }, rows(r))
    assert.are.equal("Expected: 2\n  But was:  0\nat Calc.Tests.CalculatorTests.Divide() in "
      .. "/home/build/Calc.Tests/CalculatorTests.cs:line 25", r.cases[2].message)
    assert.are.equal("Waiting for the math library", r.cases[4].message)
    near(0.031, r.cases[1].duration)
    assert.is_nil(r.cases[4].duration)
  end)

  it("reads NUnit 3 console XML: labels, warnings, skip reasons", function()
    local r = parse("nunit3.xml", "nunit3xml")
    assert.are.equal("NUNIT3XML", r.format)
    assert.are.same({
      "SUCCEEDED Shop.CartTests > AddsItem",
      "FAILED Shop.CartTests > AppliesDiscount(10,90)",
      "ERROR Shop.CartTests > Checkout",
      "SKIPPED Shop.CartTests > Refund",
      "SUCCEEDED Shop.PriceTests > Rounds",
      "SUCCEEDED Shop.PriceTests > FormatsEuro",
    }, rows(r))
    assert.is_truthy(r.cases[2].message:find("^Expected: 90m\n  But was:  100m\nat Shop%.Cart"))
    assert.are.equal("Payments sandbox is down", r.cases[4].message)
    assert.are.equal("Culture de-DE is not installed", r.cases[6].message)
    near(0.021984, r.cases[1].duration)
  end)

  it("reads testng-results.xml; a failed configuration method is an ERROR case", function()
    local r = parse("testng-results.xml", "TESTNGXML")
    assert.are.same({
      "SUCCEEDED com.example.OrderServiceTest > placesOrder",
      "FAILED com.example.OrderServiceTest > rejectsEmptyOrder",
      "SKIPPED com.example.OrderServiceTest > cancelsOrder",
      "ERROR com.example.InventoryTest > connect",
      "SKIPPED com.example.InventoryTest > reservesStock",
      "SUCCEEDED com.example.InventoryTest > countsStock",
    }, rows(r))
    near(0.23, r.cases[1].duration)
    assert.are.equal("java.lang.AssertionError: expected [true] but found [false]",
      r.cases[2].message:match("^[^\n]*"))
    assert.is_truthy(r.cases[2].message:find("OrderServiceTest.java:42", 1, true))
    assert.is_truthy(r.cases[4].message:find("^java.net.ConnectException: Connection refused"))
  end)

  it("reads a .trx from dotnet test, with a BOM and a data-driven test", function()
    local r = parse("dotnet.trx", "VisualStudioTrx")
    assert.are.same({
      "SUCCEEDED Json.Tests.ParserTests > Parses_valid_json",
      "FAILED Json.Tests.ParserTests > Rejects_trailing_comma",
      "SKIPPED Json.Tests.StreamTests > Streams_large_file",
      "FAILED Json.Tests.MathTests > Rounds_numbers",
    }, rows(r))
    near(0.0123456, r.cases[1].duration)
    near(62.5, r.cases[3].duration)
    assert.are.equal("Assert.Throws() Failure", r.cases[2].message:match("^[^\n]*"))
    assert.is_truthy(r.cases[2].message:find("ParserTests.cs:line 27", 1, true))
    -- The failed row of the data-driven test explains its parent.
    assert.is_truthy(r.cases[4].message:find("^Assert.AreEqual failed. Expected:<3>. Actual:<2>."))
  end)

  it("reads Cucumber JSON: backgrounds, hooks, undefined, ambiguous", function()
    local r = parse("cucumber.json", "CUCUMBERJSON")
    assert.are.same({
      "SUCCEEDED Basket > Add an item to the basket",
      "FAILED Basket > Remove an item",
      "UNKNOWN Basket > Pay by invoice",
      "SKIPPED Search > Search by name — café",
      "ERROR Search > Search twice",
    }, rows(r))
    -- background 1.2 ms + hooks 0.8 ms + steps 18 ms, in seconds
    near(0.0012 + 0.0005 + 0.0003 + 0.002 + 0.015 + 0.001, r.cases[1].duration)
    assert.are.equal("Then the basket is empty", r.cases[2].message:match("^[^\n]*"))
    assert.is_truthy(r.cases[2].message:find("expected 0 items but was 1", 1, true))
    assert.is_nil(r.cases[3].duration)
    assert.are.equal("classpath:features/basket.feature", r.cases[1].prefix)
  end)
end)

describe("reports.parse: coverage formats", function()
  local function files(r)
    local out = {}
    for i, f in ipairs(r.files) do
      out[i] = { f.path, f.lines_covered, f.lines_missed, f.branches_covered, f.branches_missed }
    end
    return out
  end
  local function totals(r)
    local s = r.summary
    return { s.lines_covered, s.lines_missed, s.branches_covered, s.branches_missed }
  end

  it("reads clover.xml from PHPUnit, leaving out the test project", function()
    local r = parse("clover.xml", "CLOVERXML")
    assert.are.equal("coverage", r.kind)
    assert.are.same({ 20, 8, 3, 1 }, totals(r))
    near(20 / 28 * 100, r.summary.line_pct)
    near(75, r.summary.branch_pct)
    assert.are.same({
      { "/home/build/shop/src/Billing/Invoice.php", 17, 3, 3, 1 },
      { "/home/build/shop/src/Billing/Tax.php", 0, 5, 0, 0 },
      { "/home/build/shop/src/helpers.php", 3, 0, 0, 0 },
    }, files(r))
    near(85, r.files[1].line_pct)
    assert.is_nil(r.files[2].branch_pct) -- no conditionals: nothing to cover
  end)

  it("reads Cobertura XML from coverage.py", function()
    local r = parse("cobertura-coveragepy.xml", "COBERTURAXML")
    assert.are.same({ 9, 3, 3, 3 }, totals(r))
    near(75, r.summary.line_pct)
    near(50, r.summary.branch_pct)
    assert.are.same({ { "app/__init__.py", 2, 0, 0, 0 }, { "app/orders.py", 7, 3, 3, 3 } },
      files(r))
  end)

  it("reads Cobertura XML from Cobertura: DOCTYPE, inner classes merged, methods not counted",
    function()
      local r = parse("cobertura-java.xml", "coberturaxml")
      assert.are.same({ 3, 2, 1, 3 }, totals(r))
      assert.are.same({ { "com/example/Calculator.java", 3, 2, 1, 3 } }, files(r))
    end)

  it("reads jacoco.xml: LINE and BRANCH counters", function()
    local r = parse("jacoco.xml", "JACOCOXML")
    assert.are.same({ 3, 5, 1, 3 }, totals(r))
    near(37.5, r.summary.line_pct)
    near(25, r.summary.branch_pct)
    assert.are.same({
      { "com/example/Calculator.java", 3, 1, 1, 1 },
      { "com/example/io/Reader.java", 0, 4, 0, 2 },
    }, files(r))
  end)

  it("reads SimpleCov's .resultset.json, merging commands line by line", function()
    local r = parse("simplecov/.resultset.json", "SIMPLECOV")
    -- money.rb: RSpec [1,nil,ignored,0,0] + Minitest [1,nil,ignored,2,0] -> 2 covered, 1 missed
    assert.are.same({
      { "/home/build/shop/app/models/order.rb", 6, 1, 1, 1 },
      { "/home/build/shop/lib/money.rb", 2, 1, 0, 0 },
    }, files(r))
    assert.are.same({ 8, 2, 1, 1 }, totals(r))
    near(80, r.summary.line_pct)
  end)

  it("reads SimpleCov's coverage.json the same way", function()
    local a = parse("simplecov/.resultset.json", "SIMPLECOV")
    local b = parse("simplecov/coverage.json", "SIMPLECOV")
    assert.are.same(a.summary, b.summary)
    assert.are.same(a.files, b.files)
  end)

  it("reads SimpleCov's .last_run.json: percentages only", function()
    local r = parse("simplecov/.last_run.json", "SIMPLECOV")
    assert.are.same({ line_pct = 76.92, branch_pct = 50.0 }, r.summary)
    assert.are.same({}, r.files)
    r = parse("simplecov-legacy/.last_run.json", "SIMPLECOV")
    assert.are.same({ line_pct = 75.0 }, r.summary)
  end)

  it("reads SimpleCov before 0.18 (lines array under the path)", function()
    local r = parse("simplecov-legacy/.resultset.json", "SIMPLECOV")
    assert.are.same({ { "/home/build/old/lib/a.rb", 3, 1, 0, 0 } }, files(r))
  end)
end)

describe("reports: formats and limits", function()
  it("defaults to JUNITXML and accepts any case", function()
    assert.are.equal("JUNITXML", reports.format(nil))
    assert.are.equal("NUNIT3XML", reports.format("nUnit3Xml"))
    assert.are.equal("coverage", reports.kind("simplecov"))
    assert.are.equal("test", reports.kind(nil))
  end)

  it("refuses an unknown format, naming the accepted ones", function()
    local err = helper.raises("EINPUT", reports.parse_string, "<testsuite/>", "XUNIT")
    assert.are.equal("unknown report file-format 'XUNIT' (expected one of CUCUMBERJSON, JUNITXML, "
      .. "NUNITXML, NUNIT3XML, TESTNGXML, VISUALSTUDIOTRX, CLOVERXML, COBERTURAXML, JACOCOXML, "
      .. "SIMPLECOV)", err.message)
    helper.raises("EINPUT", reports.parse, FIX .. "junit-pytest.xml", 42)
  end)

  it("reports a missing file, a directory and an empty file", function()
    local err = helper.raises("ENOENT", reports.parse, FIX .. "missing.xml")
    assert.are.equal("report file '" .. FIX .. "missing.xml': no such file or directory",
      err.message)
    err = helper.raises("EINPUT", reports.parse, FIX .. "simplecov")
    assert.are.equal(FIX .. "simplecov: not a regular file (directory)", err.message)
    -- A device or a FIFO would never end (or never start): refused before reading.
    err = helper.raises("EINPUT", reports.parse, "/dev/zero")
    assert.are.equal("/dev/zero: not a regular file (char)", err.message)
    err = helper.raises("EINPUT", reports.parse, FIX .. "hostile/empty.xml")
    assert.are.equal(FIX .. "hostile/empty.xml: empty file, not a JUnit XML report", err.message)
    helper.raises("EINPUT", reports.parse_string, " \n\t", "CUCUMBERJSON", "e.json")
  end)

  it("accepts an empty suite and gives zero counts", function()
    local r = reports.parse_string('<testsuites name="none"/>', "JUNITXML", "none.xml")
    assert.are.same({ 0, 0, 0, 0, 0, 0 }, counts(r))
    assert.are.equal(0, r.summary.duration)
    r = reports.parse_string("[]", "CUCUMBERJSON", "none.json")
    assert.are.same({}, r.cases)
  end)

  it("cuts long messages at 4 KiB on a character boundary", function()
    local long = string.rep("é", 5000) -- 10,000 bytes of two-byte characters
    local r = reports.parse_string('<testsuite><testcase name="t"><failure message="m">' .. long
      .. "</failure></testcase></testsuite>", "JUNITXML", "long.xml")
    local m = r.cases[1].message
    assert.is_true(#m <= reports.limits.message)
    assert.is_truthy(m:find("\n%[%.%.%. %d+ bytes cut%]$"))
    assert.is_truthy(utf8.len(m), "the cut message is valid UTF-8")
    assert.are.equal(4096, reports.limits.message)
  end)

  it("reads Latin-1 declared documents as UTF-8", function()
    local r = reports.parse_string('<?xml version="1.0" encoding="ISO-8859-1"?>\n'
      .. '<testsuite name="caf\233"><testcase name="na\239ve"/></testsuite>', nil, "l1.xml")
    assert.are.same({ "SUCCEEDED café > naïve" }, rows(r))
  end)

  it("refuses more cases than the limit", function()
    local saved = common.MAX_CASES
    common.MAX_CASES = 3
    local ok, err = pcall(reports.parse_string, "<testsuite>"
      .. string.rep('<testcase name="x"/>\n', 4) .. "</testsuite>", "JUNITXML", "many.xml")
    common.MAX_CASES = saved
    assert.is_false(ok)
    assert.are.equal("ELIMIT", err.code)
    assert.are.equal("many.xml:4: more than 3 test cases", err.message)
  end)

  it("refuses a document larger than the size limit before parsing it", function()
    local big = string.rep(" ", reports.limits.file_bytes + 1)
    local err = helper.raises("ELIMIT", reports.parse_string, big, "JUNITXML", "big.xml")
    assert.is_truthy(err.message:find("^big.xml: %d+ bytes, more than the 67108864"))
  end)

  it("lets other tasks run while it parses a large file", function()
    local parts = { "<testsuites><testsuite name='big'>" }
    for i = 1, 20000 do
      parts[#parts + 1] = string.format("<testcase name='t%d' classname='c' time='0.001'/>", i)
    end
    parts[#parts + 1] = "</testsuite></testsuites>"
    local ticks, done = 0, false
    local ticker = tide.spawn(function()
      while not done do
        ticks = ticks + 1
        tide.sleep(0)
      end
    end)
    local r = reports.parse_string(table.concat(parts), "JUNITXML", "big.xml")
    done = true
    ticker:wait()
    assert.are.equal(20000, r.summary.total)
    assert.is_true(ticks >= 2, "the ticker ran " .. ticks .. " times")
  end)
end)

describe("reports: hostile input", function()
  it("names the file and line of malformed XML", function()
    local err = helper.raises("EINPUT", reports.parse, FIX .. "hostile/malformed.xml")
    assert.are.equal(FIX .. "hostile/malformed.xml:6: malformed XML (column 6): mismatched tag",
      err.message)
    err = helper.raises("EINPUT", reports.parse_string, "<testsuite>\n<testcase name='a'>\n",
      "JUNITXML", "cut.xml")
    assert.is_truthy(err.message:find(
      "^cut%.xml:3: malformed XML %(column %d+%): no element found$"), err.message)
    -- Bytes that are not UTF-8 in a UTF-8 document
    err = helper.raises("EINPUT", reports.parse_string, "<testsuite name='\255'/>", nil, "b.xml")
    assert.is_truthy(err.message:find("^b.xml:1: malformed XML"), err.message)
  end)

  it("refuses entity declarations: billion laughs ends at the first one", function()
    local err = helper.raises("EINPUT", reports.parse, FIX .. "hostile/billion-laughs.xml")
    assert.are.equal(FIX .. "hostile/billion-laughs.xml:3: entity declarations are not accepted "
      .. "(<!ENTITY lol ...>)", err.message)
  end)

  it("keeps expat's own amplification limit on as a second line", function()
    local lxp = require("lxp")
    assert.is_truthy(lxp._EXPAT_FEATURES.XML_BLAP_MAX_AMP, "expat built without BLA protection")
    local p = lxp.new({})
    local ok, msg = p:parse(helper.read(FIX .. "hostile/billion-laughs.xml"))
    assert.is_nil(ok)
    assert.is_truthy(msg:find("amplification"), msg)
  end)

  it("never reads an external entity (XXE), general or parameter", function()
    for _, name in ipairs({ "xxe.xml", "xxe-parameter.xml" }) do
      local err = helper.raises("EINPUT", reports.parse, FIX .. "hostile/" .. name)
      assert.is_truthy(err.message:find(":3: entity declarations are not accepted", 1, true),
        err.message)
      assert.is_falsy(err.message:find("root:", 1, true))
    end
    -- An external DTD is neither fetched nor read: the document parses on its own.
    local r = parse("hostile/external-dtd.xml")
    assert.are.same({ "SUCCEEDED dtd > only the case & no DTD" }, rows(r))
    assert.is_falsy(json.encode(r):find("root:", 1, true))
  end)

  it("caps element depth", function()
    local deep = string.rep("<testsuite>", 300) .. string.rep("</testsuite>", 300)
    local err = helper.raises("ELIMIT", reports.parse_string, deep, "JUNITXML", "deep.xml")
    assert.are.equal("deep.xml:1: elements nested deeper than 256", err.message)
    -- Deep JSON stops in the decoder.
    helper.raises("EINPUT", reports.parse_string, string.rep("[", 5000), "CUCUMBERJSON", "d.json")
  end)

  it("refuses XML that is not a report of the format", function()
    local err = helper.raises("EINPUT", reports.parse, FIX .. "hostile/not-a-report.xml")
    assert.are.equal(FIX .. "hostile/not-a-report.xml:2: not a JUnit XML report: the root element "
      .. "is <project>, expected <testsuite> or <testsuites>", err.message)
    err = helper.raises("EINPUT", reports.parse, FIX .. "jacoco.xml", "COBERTURAXML")
    assert.is_truthy(err.message:find("not a Cobertura XML report: the root element is <report>",
      1, true))
    helper.raises("EINPUT", reports.parse, FIX .. "nunit3.xml", "NUNITXML")
    helper.raises("EINPUT", reports.parse, FIX .. "nunit2.xml", "NUNIT3XML")
    helper.raises("EINPUT", reports.parse, FIX .. "junit-pytest.xml", "CUCUMBERJSON")
  end)

  it("refuses JSON of the wrong shape, naming what was expected", function()
    local err = helper.raises("EINPUT", reports.parse, FIX .. "hostile/wrong-shape.json",
      "CUCUMBERJSON")
    assert.are.equal(FIX .. "hostile/wrong-shape.json: not a Cucumber JSON report: expected an "
      .. "array of features, found an object", err.message)
    err = helper.raises("EINPUT", reports.parse_string, "[1, 2]", "CUCUMBERJSON", "n.json")
    assert.are.equal("n.json: not a Cucumber JSON report: feature 1 is not an object", err.message)
    err = helper.raises("EINPUT", reports.parse_string, '[{"elements": {"a": 1}}]', "CUCUMBERJSON",
      "e.json")
    assert.are.equal("e.json: not a Cucumber JSON report: feature 1: 'elements' is not an array",
      err.message)
    err = helper.raises("EINPUT", reports.parse, FIX .. "cucumber.json", "SIMPLECOV")
    assert.are.equal(FIX .. "cucumber.json: not a SimpleCov JSON report: expected an object",
      err.message)
    err = helper.raises("EINPUT", reports.parse_string, '{"RSpec": {"timestamp": 1}}', "SIMPLECOV",
      "r.json")
    assert.are.equal("r.json: not a SimpleCov JSON report: 'RSpec' has no 'coverage' object",
      err.message)
    err = helper.raises("EINPUT", reports.parse_string, '{"coverage": {"a.rb": {"lines": 3}}}',
      "SIMPLECOV", "l.json")
    assert.are.equal("l.json: not a SimpleCov JSON report: the coverage of 'a.rb' has no lines "
      .. "array", err.message)
    err = helper.raises("EINPUT", reports.parse_string, '{"result": {"line": "high"}}',
      "SIMPLECOV", "p.json")
    assert.are.equal("p.json: not a SimpleCov JSON report: 'result' has no line percentage",
      err.message)
  end)

  it("names the line of malformed JSON", function()
    local err = helper.raises("EINPUT", reports.parse, FIX .. "hostile/malformed.json",
      "CUCUMBERJSON")
    assert.are.equal(FIX .. "hostile/malformed.json:5: malformed JSON: Expected value but found "
      .. "T_OBJ_END at character 77", err.message)
  end)

  it("survives every format fed every other format's file", function()
    local names = { "junit-surefire.xml", "nunit2.xml", "nunit3.xml", "testng-results.xml",
      "dotnet.trx", "cucumber.json", "clover.xml", "cobertura-coveragepy.xml", "jacoco.xml",
      "simplecov/.resultset.json", "hostile/xxe.xml", "hostile/malformed.json" }
    local all = {}
    table.move(reports.TEST_FORMATS, 1, #reports.TEST_FORMATS, 1, all)
    table.move(reports.COVERAGE_FORMATS, 1, #reports.COVERAGE_FORMATS, #all + 1, all)
    for _, name in ipairs(names) do
      for _, format in ipairs(all) do
        local ok, r = pcall(reports.parse, FIX .. name, format)
        if ok then
          assert.are.equal(format, r.format)
          assert.is_table(r.summary)
        else
          assert.is_truthy(r.code == "EINPUT" or r.code == "ELIMIT", name .. " as " .. format
            .. ": " .. tostring(r))
          assert.are.equal(1, select(2, r.message:gsub("\n", "")) + 1, "one line")
        end
      end
    end
  end)
end)

describe("reports: record and list", function()
  local unit, api, cov

  before_each(function()
    unit = parse("junit-surefire.xml")
    api = parse("junit-pytest.xml")
    cov = parse("jacoco.xml", "JACOCOXML")
  end)

  it("stores a group's results and reads them back", function()
    local build = "web:" .. tostring(tide.now())
    local id = reports.record(build, "web-unit", { unit, api })
    local cid = reports.record(build, "web-coverage", { cov })
    assert.is_true(cid > id)

    local list = reports.list({ build = build })
    assert.are.equal(2, #list)
    local c, u = list[1], list[2] -- newest first
    assert.are.equal(cid, c.id)
    assert.are.equal("web-coverage", c.group)
    assert.are.equal("SUCCEEDED", c.status)
    assert.are.equal("coverage", c.kind)
    assert.are.equal("JACOCOXML", c.format)
    near(37.5, c.summary.line_pct)
    assert.are.equal(5, c.summary.lines_missed)

    assert.are.equal(build, u.build)
    assert.are.equal("FAILED", u.status)
    assert.are.equal(2, u.files)
    assert.are.same({ total = 11, SUCCEEDED = 4, FAILED = 2, ERROR = 2, SKIPPED = 3,
      UNKNOWN = 0 }, { total = u.summary.total, SUCCEEDED = u.summary.SUCCEEDED,
      FAILED = u.summary.FAILED, ERROR = u.summary.ERROR, SKIPPED = u.summary.SKIPPED,
      UNKNOWN = u.summary.UNKNOWN })
    near(0.052 + 0.041, u.summary.duration)
    assert.is_true(math.abs(u.created - tide.now()) < 60)

    local all = reports.cases(id)
    assert.are.equal(11, #all)
    assert.are.equal("addsTwoNumbers", all[1].name)
    assert.are.equal(FIX .. "junit-surefire.xml", all[1].file)
    assert.are.equal(unit.cases[2].message, all[2].message)
    local failed = reports.cases(id, { status = { "FAILED", "ERROR" } })
    local names = {}
    for i, x in ipairs(failed) do
      names[i] = x.status .. " " .. x.name
    end
    assert.are.same({ "FAILED dividesByZero", "ERROR parsesInput", "FAILED test_create_user",
      "ERROR test_delete_user" }, names)
    assert.are.equal(3, #reports.cases(id, { status = "SKIPPED" }))

    local files = reports.coverage_files(cid)
    assert.are.equal(2, #files)
    assert.are.equal("com/example/io/Reader.java", files[2].path)

    assert.are.equal(1, #reports.list({ build = build, group = "web-unit" }))
    assert.are.same({}, reports.list({ build = "nope:0" }))
  end)

  it("marks a group SUCCEEDED without failures and INCOMPLETE with an unreadable file", function()
    local build = "ok:" .. tostring(tide.now())
    local green = parse("junit-pytest.xml")
    green.cases = { green.cases[1], green.cases[5] }
    common.finish_test(green)
    reports.record(build, "green", { green })
    local ok, err = pcall(reports.parse, FIX .. "hostile/malformed.xml")
    assert.is_false(ok)
    reports.record(build, "partial", { green, { file = "broken.xml", error = tostring(err) } })
    local byname = {}
    for _, r in ipairs(reports.list({ build = build })) do
      byname[r.group] = r
    end
    assert.are.equal("SUCCEEDED", byname.green.status)
    assert.are.equal("INCOMPLETE", byname.partial.status)
    assert.are.equal("broken.xml", byname.partial.errors[1].file)
    assert.is_truthy(byname.partial.errors[1].message:find("mismatched tag", 1, true))
  end)

  it("refuses to mix kinds in a group, and writes nothing on a failure", function()
    local build = "mix:" .. tostring(tide.now())
    local err = helper.raises("EINPUT", reports.record, build, "mixed", { unit, cov })
    assert.is_truthy(err.message:find("either test or coverage", 1, true))
    -- A case the table refuses (no status) rolls the whole report back.
    local bad = parse("junit-pytest.xml")
    bad.cases[4].status = nil
    local ok = pcall(reports.record, build, "bad", { bad })
    assert.is_false(ok)
    assert.are.same({}, reports.list({ build = build }))
    assert.has_error(function() reports.record(nil, "g", {}) end)
    assert.has_error(function() reports.record("b:1", "", {}) end)
  end)
end)

describe("reports.summary_lines", function()
  it("prints one line per group, in name order", function()
    local unit = parse("junit-surefire.xml")
    local api = parse("junit-pytest.xml")
    local cov = parse("cobertura-coveragepy.xml", "COBERTURAXML")
    local last = parse("simplecov/.last_run.json", "SIMPLECOV")
    local one = reports.parse_string('<testsuite><testcase name="a" time="3.24"/></testsuite>')
    assert.are.same({
      "report group 'cov': line 75.0 %, branch 50.0 %",
      "report group 'one': 1 test, 1 succeeded, 0 failed, 0 skipped (3.2 s)",
      "report group 'rb': line 76.9 %, branch 50.0 %",
      "report group 'unit': 11 tests, 4 succeeded, 2 failed, 2 errors, 3 skipped (0.1 s); "
        .. "1 file could not be read",
    }, reports.summary_lines({ unit = { unit, api, { file = "x.xml", error = "bad" } },
      cov = { cov }, one = { one }, rb = { last } }))
    local jac = parse("clover.xml", "CLOVERXML")
    jac.summary.branch_pct = nil
    assert.are.equal("report group 'c': line 71.4 %, branch n/a",
      reports.summary_line("c", "coverage", jac.summary))
  end)
end)

describe("tide reports", function()
  local TIDE = helper.tide
  local dir, home

  before_each(function()
    dir = helper.tmpdir()
    home = dir .. "/home"
  end)

  after_each(function()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  local function run(args)
    local errfile = dir .. "/stderr"
    local out, rc = helper.sh(string.format("%s --home '%s' %s 2>'%s'", TIDE, home, args, errfile))
    return out, helper.read(errfile), rc
  end

  local RECORD = [[
local reports = require("tide.reports")
local F = ...
reports.record("shop:0b7c", "shop-unit", { reports.parse(F .. "junit-surefire.xml"),
  reports.parse(F .. "nunit3.xml", "NUNIT3XML") })
reports.record("shop:0b7c", "shop-cov", { reports.parse(F .. "clover.xml", "CLOVERXML") })
reports.record("shop:1a2d", "shop-unit", { reports.parse(F .. "junit-pytest.xml") })
]]

  local function record()
    helper.write(dir .. "/record.lua", RECORD)
    local _, err, rc = run("'" .. dir .. "/record.lua' '" .. FIX .. "'")
    assert.are.equal(0, rc, err)
  end

  it("says so when nothing was recorded", function()
    local out, err, rc = run("reports")
    assert.are.equal(0, rc, err)
    assert.are.equal("no reports in '" .. home .. "'\n", out)
    out, err, rc = run("reports shop:1")
    assert.are.equal("", out)
    assert.are.equal(2, rc)
    assert.are.equal("tide: no reports for build 'shop:1' in '" .. home .. "'\n", err)
    -- A home where scripts ran but nothing recorded a report has no report tables yet.
    helper.write(dir .. "/noop.lua", "return 0")
    out, err, rc = run("'" .. dir .. "/noop.lua'")
    assert.are.equal(0, rc, err)
    assert.are.equal("", out)
    out, err, rc = run("reports")
    assert.are.equal(0, rc, err)
    assert.are.equal("no reports in '" .. home .. "'\n", out)
    out, err, rc = run("reports --json")
    assert.are.equal(0, rc, err)
    assert.are.equal("[]\n", out)
  end)

  it("lists recent reports, newest first", function()
    record()
    local out, err, rc = run("reports")
    assert.are.equal(0, rc, err)
    local l = {}
    for line in out:gmatch("[^\n]+") do
      l[#l + 1] = line
    end
    assert.are.equal(4, #l)
    assert.is_truthy(l[1]:match("^ID%s+BUILD%s+GROUP%s+STATUS%s+CREATED%s+SUMMARY$"), l[1])
    assert.is_truthy(l[2]:match("^ 3  shop:1a2d  shop%-unit  FAILED%s+[%d-]+ [%d:]+  6 tests, 2 "
      .. "succeeded, 1 failed, 1 error, 2 skipped %(0%.0 s%)$"), l[2])
    assert.is_truthy(l[3]:match("^ 2  shop:0b7c  shop%-cov   SUCCEEDED  .*line 71%.4 %%, branch "
      .. "75%.0 %%$"), l[3])
    out = run("reports --failed --limit 1")
    assert.is_truthy(out:find("\n 3  shop:1a2d", 1, true), out)
    assert.are.equal(2, select(2, out:gsub("\n", "")))
    out = run("reports --group shop-cov --json")
    local doc = json.decode(out)
    assert.are.equal(1, #doc)
    assert.are.equal("CLOVERXML", doc[1].format)
    assert.are.equal(20, doc[1].summary.lines_covered)
  end)

  it("shows a build's groups with their failed cases", function()
    record()
    local out, err, rc = run("reports shop:0b7c")
    assert.are.equal(0, rc, err)
    assert.are.equal(table.concat({
      "FAILED  report group 'shop-unit': 11 tests, 5 succeeded, 2 failed, 2 errors, 2 skipped "
        .. "(0.1 s) (JUNITXML)",
      "  FAILED  com.example.CalculatorTest > dividesByZero (0.004 s)",
      "          org.opentest4j.AssertionFailedError: expected: <Infinity> but was: <NaN>",
      "  ERROR   com.example.CalculatorTest > parsesInput (0.002 s)",
      "          java.lang.NullPointerException: Cannot invoke \"String.trim()\" because \"s\" is "
        .. "null",
      "  FAILED  Shop.CartTests > AppliesDiscount(10,90) (0.034 s)",
      "          Expected: 90m",
      "  ERROR   Shop.CartTests > Checkout (0.004 s)",
      "          System.InvalidOperationException : Sequence contains no elements",
      "SUCCEEDED  report group 'shop-cov': line 71.4 %, branch 75.0 % (CLOVERXML)",
      "",
    }, "\n"), out)
    out = run("reports shop:0b7c --failed")
    assert.is_falsy(out:find("shop-cov", 1, true))
    out, err, rc = run("reports shop:0b7c --group nope")
    assert.are.equal("", out)
    assert.are.equal(2, rc)
    assert.are.equal("tide: no reports for build 'shop:0b7c' and group 'nope' in '" .. home
      .. "'\n", err)
    out = run("reports shop:0b7c --group shop-cov --json")
    local doc = json.decode(out)
    assert.are.equal(1, #doc)
    assert.are.equal("shop-cov", doc[1].group)
    out = run("--json reports shop:0b7c")
    doc = json.decode(out)
    assert.are.equal(4, #doc[1].cases)
    assert.are.equal("dividesByZero", doc[1].cases[1].name)
    assert.is_truthy(doc[1].cases[1].message:find("CalculatorTest.java:31", 1, true))
  end)

  it("refuses bad usage with exit 2", function()
    local _, err, rc = run("reports a b")
    assert.are.equal(2, rc)
    assert.is_truthy(err:find("reports: unexpected argument 'b'", 1, true), err)
    _, err, rc = run("reports --limit x")
    assert.are.equal(2, rc)
    assert.is_truthy(err:find("--limit must be a positive integer", 1, true), err)
    _, _, rc = run("reports --bogus")
    assert.are.equal(2, rc)
  end)
end)
