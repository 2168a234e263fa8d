--- tide.buildspec.env: the environment of a build. Buildspec variables are literal; parameter
--- store and secrets manager references are resolved from tide's own stores before any command
--- runs; overrides (tide build --env, run{env=}) win over both. CODEBUILD_* variables with a
--- local meaning are set by tide and cannot be overridden.
local tide = require("tide")

local M = {}

local function input(spec, item, fmt, ...)
  local at = item and item.line and string.format("%s:%d", spec.file, item.line) or spec.file
  error(tide.error("EINPUT", string.format("%s: %s: " .. fmt, at, item and item.key or "env", ...),
    { file = spec.file, line = item and item.line, key = item and item.key }), 0)
end

local function optional(name)
  local ok, mod = pcall(require, name)
  if ok then
    return mod
  end
  -- Only "not there" means absent; an error inside the module is a bug to show.
  if type(mod) == "string" and mod:find("module '" .. name .. "' not found", 1, true) then
    return nil
  end
  error(mod, 0)
end
M.optional = optional

--- The text of a store value: secrets (userdata) are revealed, since the build's environment
--- needs the real value; the second result says it was a secret.
local function reveal(v)
  if type(v) == "userdata" then
    local ok, text = pcall(function()
      return v:reveal()
    end)
    if ok and type(text) == "string" then
      return text, true
    end
  end
  return tostring(v), false
end

--- Resolves env.parameter-store and env.secrets-manager. Returns a list of {name, value} and
--- the list of values to mask in logs. Raises EINPUT naming file, line, key and the missing name.
function M.resolve_stores(spec, opts)
  local out, secret_values = {}, {}
  opts = opts or {}
  if spec.parameters and #spec.parameters > 0 then
    local params = opts.params or optional("tide.params")
    for _, p in ipairs(spec.parameters) do
      if not params then
        input(spec, p, "parameter '%s' cannot be resolved: tide has no parameter store "
          .. "(tide.params is not available)", p.value)
      end
      local ok, r = pcall(params.get, p.value, { with_decryption = true })
      local v = ok and type(r) == "table" and r.value or nil
      if not ok or v == nil then
        local why = not ok and (type(r) == "table" and r.message or tostring(r)) or "not found"
        input(spec, p, "parameter '%s' cannot be resolved: %s", p.value, why)
      end
      local text, secret = reveal(v)
      out[#out + 1] = { name = p.name, value = text }
      if secret or r.type == "SecureString" then
        secret_values[#secret_values + 1] = text
      end
    end
  end
  if spec.secrets and #spec.secrets > 0 then
    local secrets = opts.secrets or optional("tide.secrets")
    for _, s in ipairs(spec.secrets) do
      if not secrets then
        input(spec, s, "secret '%s' cannot be resolved: tide has no secret store "
          .. "(tide.secrets is not available)", s.ref.id)
      end
      local ok, r = pcall(secrets.get_value, s.ref.id, { json_key = s.ref.json_key,
        stage = s.ref.stage, version_id = s.ref.version_id })
      local v = ok and type(r) == "table" and r.value or nil
      if not ok or v == nil then
        local why = not ok and (type(r) == "table" and r.message or tostring(r)) or "not found"
        input(spec, s, "secret '%s' cannot be resolved: %s", s.value, why)
      end
      local text = reveal(v)
      out[#out + 1] = { name = s.name, value = text }
      secret_values[#secret_values + 1] = text
    end
  end
  return out, secret_values
end

--- The CODEBUILD_* variables of a build (b: the build record being made).
function M.codebuild(b)
  local v = {
    CODEBUILD_SRC_DIR = b.src,
    CODEBUILD_BUILD_ID = b.id,
    CODEBUILD_BUILD_ARN = "arn:aws:codebuild:local:000000000000:build/" .. b.id,
    CODEBUILD_BUILD_NUMBER = tostring(b.number),
    CODEBUILD_BUILD_SUCCEEDING = "1",
    CODEBUILD_START_TIME = string.format("%d", math.floor(b.started * 1000)),
    CODEBUILD_INITIATOR = b.initiator,
    CODEBUILD_LOG_PATH = b.uuid,
    CODEBUILD_BUILD_IMAGE = "tide/local",
    CODEBUILD_RESOLVED_SOURCE_VERSION = b.resolved_source_version,
    CODEBUILD_SOURCE_VERSION = b.source_version,
    CODEBUILD_SOURCE_REPO_URL = b.source_repo_url,
    CODEBUILD_BATCH_BUILD_IDENTIFIER = b.batch_identifier,
  }
  return v
end

--- The whole environment added to tide's own: buildspec variables < resolved stores <
--- overrides < CODEBUILD_*. Returns the env table and the names in the order they were set.
function M.build(spec, b, resolved, overrides)
  local env = {}
  for _, v in ipairs(spec.variables or {}) do
    env[v.name] = v.value
  end
  for _, v in ipairs(resolved or {}) do
    env[v.name] = v.value
  end
  for k, v in pairs(overrides or {}) do
    env[k] = tostring(v)
  end
  for k, v in pairs(M.codebuild(b)) do
    env[k] = v
  end
  return env
end

--- Parses "K=V" words of the command line into a table; raises EUSAGE for a word without "=".
function M.parse_assignments(list)
  local out = {}
  for _, w in ipairs(list or {}) do
    local k, v = w:match("^([%a_][%w_]*)=(.*)$")
    if not k then
      error(tide.error("EUSAGE", string.format("--env expects NAME=VALUE, got '%s'", w)), 0)
    end
    out[k] = v
  end
  return out
end

return M
