--- tide audit verify | ls [--limit N]: the secret store's hash-chained audit log.
local q = require("tide.cli.query")
local cli = require("tide.cli")
local json = require("tide.json")

local M = {}

function M.run(ctx, args)
  local sub = table.remove(args, 1)
  local vault = require("tide.vault")
  if sub == "verify" then
    local _, pos = q.parse("audit verify", ctx, args, {})
    if #pos > 0 then
      q.usage("audit verify", "unexpected argument '%s'", pos[1])
    end
    cli.open_store(ctx)
    return require("tide.cli.secret").guard(function()
      io.stdout:write("audit log intact: ", vault.audit_verify(), " records\n")
      return 0
    end)
  elseif sub == "ls" then
    local o = q.parse("audit ls", ctx, args, { values = { ["--limit"] = "limit" } })
    local limit = o.limit and q.id("audit ls", "--limit", o.limit) or 50
    cli.open_store(ctx)
    local rows, why = vault.audit_list(limit)
    if why then
      io.stderr:write("tide: the audit journal was not ingested, reads may be missing: ", why,
        "\n")
    end
    if ctx.json then
      io.stdout:write(json.encode(json.array(rows)), "\n")
      return 0
    end
    for i = #rows, 1, -1 do
      local r = rows[i]
      io.stdout:write(("%6d  %s  run %-4s %-8s %-6s %s %s  %s\n"):format(r.seq,
        os.date("!%Y-%m-%dT%H:%M:%SZ", r.ts_us // 1000000), r.run_id == 0 and "-" or r.run_id,
        r.op, r.kind, r.name, r.version, r.outcome))
    end
    return 0
  end
  q.usage("audit", sub and "unknown subcommand '%s' (verify, ls)" or "missing subcommand%s "
    .. "(verify, ls)", sub or "")
end

return M
