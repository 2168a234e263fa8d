--- tide store rekey: a new master key, every value re-sealed under a new data key, in one
--- transaction.
local q = require("tide.cli.query")
local cli = require("tide.cli")

local M = {}

function M.run(ctx, args)
  local sub = table.remove(args, 1)
  if sub ~= "rekey" then
    q.usage("store", sub and "unknown subcommand '%s' (rekey)" or "missing subcommand%s (rekey)",
      sub or "")
  end
  local _, pos = q.parse("store rekey", ctx, args, {})
  if #pos > 0 then
    q.usage("store rekey", "unexpected argument '%s'", pos[1])
  end
  cli.open_store(ctx)
  return require("tide.cli.secret").guard(function()
    local n = require("tide.vault").rekey()
    io.stdout:write("rekeyed: ", n, " values re-sealed under a new key\n")
    return 0
  end)
end

return M
