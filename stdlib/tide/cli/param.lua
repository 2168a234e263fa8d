--- tide param put|get|ls|history|label|unlabel|rm: the parameter store from the command line.
--- A SecureString value comes from a file or standard input, never from the command line.
local q = require("tide.cli.query")
local cli = require("tide.cli")
local json = require("tide.json")
local native = require("tide._secret")

-- What these commands print is what the user asked to see: values are not masked here.
local write = require("tide.vault").write_plain

local M = {}

local SUBS = "put, get, ls, history, label, unlabel, rm"

local function when(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

local function shown(p)
  if p.value == nil then
    return "(SecureString: add --with-decryption)"
  end
  return type(p.value) == "string" and p.value or p.value:reveal()
end

local function as_json(p)
  local c = {}
  for k, v in pairs(p) do
    c[k] = v
  end
  c.value = p.value ~= nil and shown(p) or nil
  c.last_modified = when(p.last_modified)
  c.labels = json.array(p.labels or {})
  return c
end

local function out_json(v)
  write(io.stdout, json.encode(v), "\n")
end

local subs = {}

function subs.put(ctx, args)
  local cmd = "param put"
  local o, pos = q.parse(cmd, ctx, args, {
    flags = { ["--overwrite"] = "overwrite" },
    values = { ["--type"] = "type", ["--description"] = "description", ["--tier"] = "tier",
      ["--policies"] = "policies", ["--from-file"] = "file" },
  })
  if #pos == 0 then
    q.usage(cmd, "missing parameter name")
  elseif #pos > 2 then
    q.usage(cmd, "a name and one value expected")
  end
  local value = pos[2]
  if value and o.type == "SecureString" then
    q.usage(cmd, "a SecureString value is never taken from the command line: use --from-file "
      .. "FILE or stdin")
  end
  -- An existing SecureString keeps its type on --overwrite: params.put refuses the argv value
  -- then, with the stored type read under the same check.
  o.value_from_argv = value ~= nil
  if value and o.file then
    q.usage(cmd, "a value and --from-file exclude each other")
  end
  local owned
  if not value then
    local msg
    owned, msg = native.read_file(o.file or "-", 8192, true)
    if not owned then
      q.input("%s", msg)
    end
    value = owned
    if o.type ~= "SecureString" then
      value = owned:reveal()
    end
  end
  local r = require("tide.params").put(pos[1], value, o)
  if owned then
    owned:close()
  end
  if ctx.json then
    out_json(r)
  else
    write(io.stdout, "version ", r.version, " (", r.tier, ")\n")
  end
  return 0
end

function subs.get(ctx, args)
  local cmd = "param get"
  local o, pos = q.parse(cmd, ctx, args, { flags = { ["--with-decryption"] = "with_decryption" } })
  if #pos ~= 1 then
    q.usage(cmd, "one parameter name expected")
  end
  local p = require("tide.params").get(pos[1], o)
  if ctx.json then
    out_json(as_json(p))
  else
    write(io.stdout, shown(p), "\n")
  end
  return 0
end

function subs.ls(ctx, args)
  local cmd = "param ls"
  local o, pos = q.parse(cmd, ctx, args, {
    flags = { ["--recursive"] = "recursive", ["--with-decryption"] = "with_decryption" },
    values = { ["--path"] = "path", ["--type"] = "type", ["--label"] = "label" },
  })
  local path = o.path or pos[1] or "/"
  local list = require("tide.params").get_by_path(path, o)
  if ctx.json then
    local out = {}
    for i, p in ipairs(list) do
      out[i] = as_json(p)
    end
    out_json(json.array(out))
    return 0
  end
  for _, p in ipairs(list) do
    write(io.stdout, ("%s  %s  v%d  %s\n"):format(p.name, p.type, p.version, shown(p)))
  end
  return 0
end

function subs.history(ctx, args)
  local cmd = "param history"
  local o, pos = q.parse(cmd, ctx, args, { flags = { ["--with-decryption"] = "with_decryption" } })
  if #pos ~= 1 then
    q.usage(cmd, "one parameter name expected")
  end
  local list = require("tide.params").history(pos[1], o)
  if ctx.json then
    local out = {}
    for i, p in ipairs(list) do
      out[i] = as_json(p)
    end
    out_json(json.array(out))
    return 0
  end
  for _, p in ipairs(list) do
    write(io.stdout, ("v%d  %s  %s  %s  %s\n"):format(p.version, when(p.last_modified), p.type,
      table.concat(p.labels, ","), shown(p)))
  end
  return 0
end

local function labelling(ctx, args, cmd, fn)
  local o, pos = q.parse(cmd, ctx, args, { values = { ["--version"] = "version" } })
  if #pos < 2 then
    q.usage(cmd, "a parameter name and at least one label expected")
  end
  local name = table.remove(pos, 1)
  local version = o.version and q.id(cmd, "--version", o.version)
  local bad = require("tide.params")[fn](name, version, pos)
  if #bad > 0 then
    io.stderr:write("tide: ", fn == "label" and "invalid labels: " or "labels not found: ",
      table.concat(bad, ", "), "\n")
    return 2
  end
  return 0
end

function subs.label(ctx, args)
  return labelling(ctx, args, "param label", "label")
end

function subs.unlabel(ctx, args)
  return labelling(ctx, args, "param unlabel", "unlabel")
end

function subs.rm(ctx, args)
  local _, pos = q.parse("param rm", ctx, args, {})
  if #pos ~= 1 then
    q.usage("param rm", "one parameter name expected")
  end
  require("tide.params").delete(pos[1])
  return 0
end

function M.run(ctx, args)
  local sub = table.remove(args, 1)
  if not sub or not subs[sub] then
    q.usage("param", sub and "unknown subcommand '%s' (%s)" or "missing subcommand%s (%s)",
      sub or "", SUBS)
  end
  cli.open_store(ctx)
  return require("tide.cli.secret").guard(subs[sub], ctx, args)
end

return M
