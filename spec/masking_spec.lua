-- Masking: every value a run reads is replaced by *** in process output (captured, streamed as
-- lines, and in the log file), in error messages and in span attributes; in its encoded forms
-- too, and when it is split across writes. At the end, no state file holds a value in plain
-- text, base64 or URL-encoded form.
local h = require("spec.helper")
local native = require("tide._secret")
local proc = require("tide.proc")
local secrets = require("tide.secrets")
local params = require("tide.params")

local SECRET = "Zq9-masking/value+42"
local MULTI = "-----BEGIN TEST KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEF\nAASCBKcwggSjAgEAAoIBAQC7\n"
  .. "tiny\n-----END TEST KEY-----"

local function b64(s)
  local out = h.sh("printf '%s' '" .. s .. "' | base64 -w0")
  return out
end

-- Every process log of this run, concatenated.
local function logs()
  require("tide._runtime").flush()
  return h.sh("cat " .. require("tide._runtime").home() .. "/logs/*/* 2>/dev/null")
end

local function sh(script, opts)
  opts = opts or {}
  opts[1], opts[2], opts[3] = "sh", "-c", script
  return proc.run(opts)
end

describe("masking", function()
  setup(function()
    secrets.put_value("mask/one", SECRET)
    secrets.put_value("mask/pem", MULTI)
    params.put("/mask/param", "param-secure-value-77", { type = "SecureString", overwrite = true })
    -- Reading registers them for this run.
    secrets.get("mask/one")
    secrets.get("mask/pem")
    params.get("/mask/param", { with_decryption = true })
  end)

  it("masks a value in captured output, lines and the log file", function()
    local lines = {}
    local r = sh("echo before " .. SECRET .. " after; echo " .. SECRET .. " >&2", {
      on_line = function(line, stream)
        lines[#lines + 1] = stream .. ":" .. line
      end,
    })
    assert.equal("before *** after\n", r.stdout)
    assert.equal("***\n", r.stderr)
    table.sort(lines)
    assert.same({ "stderr:***", "stdout:before *** after" }, lines)
    local log = logs()
    assert.is_nil(log:find(SECRET, 1, true))
    assert.matches("before %*%*%* after", log)
  end)

  it("masks base64 at every alignment, hex, URL and JSON forms", function()
    for pre = 0, 2 do
      local blob = b64(string.rep("x", pre) .. SECRET .. "tail")
      local r = sh("printf '%s\\n' '" .. blob .. "'")
      assert.matches("%*%*%*", r.stdout)
      assert.is_nil(r.stdout:find(b64(SECRET):sub(5, 16), 1, true))
    end
    local url = SECRET:gsub("[^%w%-_.~]", function(c)
      return ("%%%02X"):format(c:byte())
    end)
    local r = sh("printf '%s\\n' 'q=" .. url .. "&x=1'")
    assert.equal("q=***&x=1\n", r.stdout)
    r = sh("printf '%s' '" .. SECRET .. "' | od -An -tx1 | tr -d ' \\n'; echo")
    assert.equal("***\n", r.stdout)
    r = sh("printf '%s\\n' '{\"k\":\"Zq9-masking\\/value+42\"}'")
    assert.equal('{"k":"***"}\n', r.stdout)
  end)

  it("masks every line of a multi-line value and says which lines it cannot", function()
    local r = sh("cat <<'EOF'\n" .. MULTI .. "\nEOF")
    assert.equal("***\n", r.stdout)
    r = sh("echo tiny; echo AASCBKcwggSjAgEAAoIBAQC7; echo '-----BEGIN TEST KEY-----' x")
    assert.equal("tiny\n***\n*** x\n", r.stdout) -- "tiny" is shorter than 8: not maskable
    assert.equal(0, native.mask(MULTI)) -- registered already: nothing to report again
    assert.equal(1, native.mask(MULTI .. "\nanother line of the key"))
  end)

  it("masks a value written in two pieces with a delay, and one at EOF without newline", function()
    for _, cut in ipairs({ 1, 5, 10, #SECRET - 1 }) do
      local a, b = SECRET:sub(1, cut), SECRET:sub(cut + 1)
      local r = sh("printf '%s' 'x " .. a .. "'; sleep 0.05; printf '%s' '" .. b .. " y'")
      assert.equal("x *** y", r.stdout)
    end
    local r = sh("printf 'end %s' '" .. SECRET .. "'")
    assert.equal("end ***", r.stdout)
  end)

  it("masks SecureString parameters and values extracted by JSON key", function()
    local r = sh("echo param-secure-value-77")
    assert.equal("***\n", r.stdout)
    secrets.put_value("mask/json", '{"token":"json-extracted-token-1"}')
    secrets.get("mask/json", { json_key = "token" })
    r = sh("echo json-extracted-token-1")
    assert.equal("***\n", r.stdout)
  end)

  it("masks error messages and span attributes", function()
    local ok, err = pcall(function()
      error(require("tide").error("EINPUT", "bad value " .. SECRET .. " here"), 0)
    end)
    assert.is_false(ok)
    assert.equal("bad value *** here", err.message)
    assert.equal("x *** y", native.mask_text("x " .. SECRET .. " y"))
    local r = proc.run({ "echo", SECRET, check = false })
    assert.equal("***\n", r.stdout)
    require("tide._runtime").flush()
    local store = require("tide._store")
    for _, sp in ipairs(store.spans(require("tide._runtime").run_id())) do
      assert.is_nil((sp.name or ""):find(SECRET, 1, true))
      assert.is_nil((sp.attrs or ""):find(SECRET, 1, true))
    end
  end)

  it("masks what Lua's print and io writes put on stdout and stderr, and tracebacks", function()
    local dir = h.tmpdir()
    h.write(dir .. "/p.lua", [[
      local s = require("tide.secrets")
      s.put_value("p", "printed-secret-value")
      local v = s.get("p"):reveal()
      print("a", v, "b")
      print(1, nil, "x printed-secret-value")
      io.write("w ", v, "\n")
      io.stdout:write("o ", v, "\n")
      io.stderr:write("e ", v, "\n")
      local f = assert(io.open(arg[1] .. "/config", "w"))
      f:write("password=", v, "\n") -- a file the script writes on purpose keeps the value
      f:close()
      error("failed with " .. v)
    ]])
    local out, rc = h.sh("TIDE_HOME=" .. dir .. " " .. h.tide .. " --plain " .. dir
      .. "/p.lua " .. dir .. " 2>" .. dir .. "/err")
    assert.equal(1, rc)
    assert.equal("a\t***\tb\n1\tnil\tx ***\nw ***\no ***\n", out)
    local err = h.read(dir .. "/err")
    assert.matches("e %*%*%*\n", err)
    assert.matches("failed with %*%*%*", err)
    assert.is_nil(err:find("printed-secret-value", 1, true))
    assert.equal("password=printed-secret-value\n", h.read(dir .. "/config"))
  end)

  it("masks stored test reports and what tide.mask is given", function()
    local tide = require("tide")
    assert.equal("token=*** ok", tide.mask("token=" .. SECRET .. " ok"))
    local reports = require("tide.reports")
    local xml = '<testsuite name="s"><testcase classname="c" name="uses ' .. SECRET .. '">'
      .. '<failure message="login with ' .. SECRET .. ' failed"/></testcase></testsuite>'
    local id = reports.record("mask:1", "unit", { reports.parse_string(xml, "JUNITXML", "r.xml") })
    local case = reports.cases(id)[1]
    assert.equal("uses ***", case.name)
    assert.matches("login with %*%*%* failed", case.message)
  end)

  it("refuses to register a value shorter than 8 bytes", function()
    local v, msg, code = native.mask("short")
    assert.is_nil(v)
    assert.equal("EINPUT", code)
    assert.matches("shorter than 8", msg)
  end)

  it("leaves no value in state.db, its WAL, the logs or the key file area", function()
    require("tide._runtime").flush()
    local home = require("tide._runtime").home()
    local files = h.sh("find " .. home .. " -type f")
    local values = { SECRET, "MIIEvQIBADANBgkqhkiG9w0BAQEF", "param-secure-value-77",
      "json-extracted-token-1" }
    local forms = {}
    for _, v in ipairs(values) do
      forms[#forms + 1] = v
      forms[#forms + 1] = b64(v):sub(1, 16)
      forms[#forms + 1] = (v:gsub("[^%w%-_.~]", function(c)
        return ("%%%02X"):format(c:byte())
      end))
    end
    local checked = 0
    for f in files:gmatch("[^\n]+") do
      local data = h.read(f) or ""
      checked = checked + 1
      for _, form in ipairs(forms) do
        assert(not data:find(form, 1, true), ("'%s' found in %s"):format(form, f))
      end
    end
    assert.is_true(checked >= 2)
  end)
end)
