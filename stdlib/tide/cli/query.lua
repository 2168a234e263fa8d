--- What `tide runs`, `tide show` and `tide logs` share: argument parsing, opening the store for
--- reading, looking a run up, and formatting times and statuses.
local tide = require("tide")

local M = {}

--- Raises the one-line usage error of command cmd (exit 2).
function M.usage(cmd, fmt, ...)
  error(tide.error("EUSAGE", cmd .. ": " .. string.format(fmt, ...) .. " (see 'tide help')"), 0)
end

--- Raises a one-line input error (exit 2).
function M.input(fmt, ...)
  error(tide.error("EINPUT", string.format(fmt, ...)), 0)
end

--- Splits args by spec: spec.flags maps a flag ("-f", "--follow") to a key set to true;
--- spec.values maps an option ("--limit") to a key taking the next argument (or "--limit=N").
--- --json and --plain are accepted here too and set ctx.json / ctx.plain. Returns the options
--- and the positional arguments; unknown options are usage errors.
function M.parse(cmd, ctx, args, spec)
  local opts, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^(%-%-[%w-]+)=(.*)$")
    name = name or a
    if a == "--" then
      table.move(args, i + 1, #args, #pos + 1, pos)
      break
    elseif name == "--json" and not value then
      ctx.json = true
    elseif name == "--plain" and not value then
      ctx.plain = true
    elseif spec.flags and spec.flags[name] and not value then
      opts[spec.flags[name]] = true
    elseif spec.values and spec.values[name] then
      if not value then
        i = i + 1
        value = args[i] or M.usage(cmd, "%s needs a value", name)
      end
      opts[spec.values[name]] = value
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      M.usage(cmd, "unknown option '%s'", a)
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

--- Lines of a text table: every column but the last padded to its widest cell, two spaces
--- apart; right lists the (1-based) columns aligned to the right (numbers, durations).
function M.columns(rows, right)
  local width, ncol, is_right = {}, 0, {}
  for _, c in ipairs(right or {}) do
    is_right[c] = true
  end
  for _, row in ipairs(rows) do
    ncol = math.max(ncol, #row)
    for c = 1, #row - 1 do
      width[c] = math.max(width[c] or 0, #row[c])
    end
  end
  local out = {}
  for _, row in ipairs(rows) do
    local cells = {}
    for c = 1, #row do
      cells[c] = c < ncol and ("%" .. (is_right[c] and "" or "-") .. width[c] .. "s"):format(row[c])
        or row[c]
    end
    out[#out + 1] = table.concat(cells, "  ")
  end
  return out
end

--- A positive integer from a command-line word, or a usage error naming what it should be.
function M.id(cmd, what, word)
  local n = word and word:match("^%d+$") and math.tointeger(tonumber(word))
  if not n or n < 1 then
    if not word then
      M.usage(cmd, "missing %s", what)
    end
    M.usage(cmd, "%s must be a positive integer, not '%s'", what, word)
  end
  return n
end

--- Opens the store of ctx read-only. Returns the tide._store module, or nil when the home has
--- no state yet (nothing has run there). Any other failure is a one-line input error.
function M.open(ctx)
  local runtime = require("tide._runtime")
  local ok, msg, code = runtime.open_store(ctx.home, true)
  if not ok then
    if code == "ENOENT" then
      return nil
    end
    M.input("%s", msg)
  end
  return require("tide._store")
end

--- The run id of ctx's store, or the error "no run N in 'home'".
function M.run(ctx, store, id)
  local run = store and store.run(id)
  if not run then
    M.input("no run %d in '%s'", id, ctx.home)
  end
  return run
end

--- The status to show: a "running" run whose tide is gone is interrupted (the next tide to
--- start will record it so).
function M.status(run)
  if run.status == "running" and run.alive == false then
    return "interrupted"
  end
  return run.status
end

--- "0.52s", "12.30s", "2m03s", "1h02m".
function M.duration(seconds)
  if not seconds then
    return "-"
  end
  if seconds < 60 then
    return string.format("%.2fs", seconds)
  elseif seconds < 3600 then
    return string.format("%dm%02ds", seconds // 60, math.floor(seconds % 60))
  end
  return string.format("%dh%02dm", seconds // 3600, math.floor(seconds % 3600 / 60))
end

--- Seconds between start and finish, or until now for what is still running.
function M.elapsed(start, finish)
  if not start then
    return nil
  end
  return (finish or tide.now()) - start
end

--- Local time of day and date of an epoch-seconds float.
function M.time(t)
  return t and os.date("%Y-%m-%d %H:%M:%S", math.floor(t)) or "-"
end

--- Marks for span and run statuses; ASCII when plain.
local marks = {
  ok = { "✓", "+" },
  succeeded = { "✓", "+" },
  error = { "✗", "x" },
  failed = { "✗", "x" },
  cancelled = { "⊘", "-" },
  timeout = { "⧗", "T" },
  interrupted = { "!", "!" },
  running = { "…", "*" },
}

function M.mark(status, plain)
  local m = marks[status]
  return m and m[plain and 2 or 1] or "?"
end

--- Prints v as one line of JSON, keys sorted so that output is stable.
function M.print_json(v)
  io.stdout:write(require("tide.json").encode(v, { sort_keys = true }), "\n")
end

return M
