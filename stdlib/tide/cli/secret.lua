--- tide secret put|get|ls|versions|rotate|rm|restore: the secret store from the command line.
--- Values come from a file or standard input, never from the command line (argv is readable by
--- every user of the machine through /proc).
local tide = require("tide")
local q = require("tide.cli.query")
local cli = require("tide.cli")
local json = require("tide.json")
local native = require("tide._secret")

-- What these commands print is what the user asked to see: values are not masked here.
local write = require("tide.vault").write_plain

local M = {}

local SUBS = "put, get, ls, versions, rotate, rm, restore"

local function when(t)
  return t and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) or "-"
end

local function one_name(cmd, pos)
  if #pos ~= 1 then
    q.usage(cmd, #pos == 0 and "missing secret name" or "one secret name expected")
  end
  return pos[1]
end

local function out_json(v)
  write(io.stdout, json.encode(v), "\n")
end

--- Runs fn(...) and turns a TideError other than a usage or input error into one line on
--- stderr and exit 1 (a missing secret, a wrong key, a failed integrity check need no traceback).
function M.guard(fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then
    return res
  end
  if tide.is_error(res) and res.code ~= "EUSAGE" and res.code ~= "EINPUT" then
    io.stderr:write("tide: ", tostring(res.message), "\n")
    return 1
  end
  error(res, 0)
end

local subs = {}

function subs.put(ctx, args)
  local cmd = "secret put"
  local o, pos = q.parse(cmd, ctx, args, {
    flags = { ["--binary"] = "binary" },
    values = { ["--from-file"] = "file", ["--description"] = "description",
      ["--stage"] = "stage", ["--version-id"] = "version_id" },
  })
  if #pos > 1 then
    q.usage(cmd, "values are never taken from the command line: use --from-file FILE or stdin")
  end
  local name = one_name(cmd, pos)
  local value, msg = native.read_file(o.file or "-", nil, not o.binary)
  if not value then
    q.input("%s", msg)
  end
  local secrets = require("tide.secrets")
  local r = secrets.put_value(name, value, { binary = o.binary, description = o.description,
    stages = o.stage and { o.stage } or nil, version_id = o.version_id })
  value:close()
  if ctx.json then
    out_json(r)
  else
    write(io.stdout, r.name, " ", r.version_id, " ", table.concat(r.stages, ","), "\n")
  end
  return 0
end

function subs.get(ctx, args)
  local cmd = "secret get"
  local o, pos = q.parse(cmd, ctx, args, {
    values = { ["--stage"] = "stage", ["--version-id"] = "version_id",
      ["--json-key"] = "json_key" },
  })
  local r = require("tide.secrets").get_value(one_name(cmd, pos), o)
  if ctx.json then
    out_json({ name = r.name, version_id = r.version_id, stages = r.stages,
      created = when(r.created), binary = r.binary, value = r.value:reveal() })
  else
    write(io.stdout, r.value:reveal(), r.binary and "" or "\n")
  end
  r.value:close()
  return 0
end

function subs.ls(ctx, args)
  local o = q.parse("secret ls", ctx, args, { flags = { ["--all"] = "all" } })
  local list = require("tide.secrets").list({ include_deleted = o.all })
  if ctx.json then
    out_json(json.array(list))
    return 0
  end
  for _, s in ipairs(list) do
    write(io.stdout, ("%-40s  %s%s\n"):format(s.name, when(s.updated),
      s.deletion_date and ("  deleted on " .. when(s.deletion_date)) or ""))
  end
  return 0
end

function subs.versions(ctx, args)
  local _, pos = q.parse("secret versions", ctx, args, {})
  local list = require("tide.secrets").list_versions(one_name("secret versions", pos))
  if ctx.json then
    out_json(json.array(list))
    return 0
  end
  for _, v in ipairs(list) do
    write(io.stdout, ("%s  %s  %s\n"):format(v.version_id, when(v.created),
      table.concat(v.stages, ",")))
  end
  return 0
end

function subs.rotate(ctx, args)
  local cmd = "secret rotate"
  local o, pos = q.parse(cmd, ctx, args, {
    flags = { ["--due"] = "due" },
    values = { ["--handler"] = "handler", ["--every"] = "every" },
  })
  local secrets = require("tide.secrets")
  if o.due then
    if #pos > 0 then
      q.usage(cmd, "--due takes no secret name")
    end
    local done, failed = secrets.rotate_due()
    for _, n in ipairs(done) do
      write(io.stdout, "rotated ", n, "\n")
    end
    for _, f in ipairs(failed) do
      io.stderr:write("tide: ", tostring(f.error), "\n")
    end
    return #failed > 0 and 1 or 0
  end
  local every = o.every and q.id(cmd, "--every", o.every)
  local v = secrets.rotate(one_name(cmd, pos), { handler = o.handler, every_days = every })
  write(io.stdout, v, "\n")
  return 0
end

function subs.rm(ctx, args)
  local cmd = "secret rm"
  local o, pos = q.parse(cmd, ctx, args, {
    flags = { ["--force"] = "force" }, values = { ["--recovery-days"] = "days" },
  })
  local days = o.days and q.id(cmd, "--recovery-days", o.days)
  local at = require("tide.secrets").delete(one_name(cmd, pos),
    { recovery_days = days, force = o.force })
  if at then
    write(io.stdout, "deletion scheduled for ", when(at), "\n")
  end
  return 0
end

function subs.restore(ctx, args)
  local _, pos = q.parse("secret restore", ctx, args, {})
  require("tide.secrets").restore(one_name("secret restore", pos))
  return 0
end

function M.run(ctx, args)
  local sub = table.remove(args, 1)
  if not sub or not subs[sub] then
    q.usage("secret", sub and "unknown subcommand '%s' (%s)" or "missing subcommand%s (%s)",
      sub or "", SUBS)
  end
  cli.open_store(ctx)
  return M.guard(subs[sub], ctx, args)
end

return M
