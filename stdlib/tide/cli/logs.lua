--- tide logs RUN [SPAN] [-f]: the output of a run's processes, in start order. Each span's output
--- gets a header line, unless one span was asked for. -f follows the logs while the run runs.
local tide = require("tide")
local q = require("tide.cli.query")

local M = {}

local POLL = 0.2
local CHUNK = 64 * 1024

--- The spans of the run that have an output log, or just span_id's (an error when it has none).
local function log_spans(ctx, store, run_id, span_id)
  local spans, err = store.spans(run_id)
  if not spans then
    q.input("%s", err)
  end
  local list = {}
  for _, s in ipairs(spans) do
    if s.log and (not span_id or s.id == span_id) then
      list[#list + 1] = s
    elseif span_id and s.id == span_id then
      q.input("span %d of run %d (%s '%s') has no output", span_id, run_id, s.kind, s.name)
    end
  end
  if span_id and #list == 0 then
    q.input("no span %d in run %d in '%s'", span_id, run_id, ctx.home)
  end
  return list
end

--- Copies what a log holds past offset to stdout; returns the new offset. A log that does not
--- exist (yet) is empty.
local function copy_from(path, offset)
  local f = io.open(path, "rb")
  if not f then
    return offset
  end
  f:seek("set", offset)
  while true do
    local data = f:read(CHUNK)
    if not data then
      break
    end
    io.stdout:write(data)
    offset = offset + #data
  end
  f:close()
  return offset
end

local function header(s)
  return string.format("==> span %d: %s %s (%s) <==\n", s.id, s.kind, (s.name:gsub("[%c]", "?")),
    s.status)
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then
    return ""
  end
  local data = f:read("a")
  f:close()
  return data
end

local function follow(ctx, store, run_id, span_id)
  local offsets, last = {}, nil
  while true do
    local run = store.run(run_id)
    local done = not run or run.status ~= "running" or run.alive == false
    for _, s in ipairs(log_spans(ctx, store, run_id, span_id)) do
      local before = offsets[s.id] or 0
      local size = before
      local f = io.open(s.log, "rb")
      if f then
        size = f:seek("end")
        f:close()
      end
      if size > before then
        if not span_id and last ~= s.id then
          io.stdout:write(last and "\n" or "", header(s))
          last = s.id
        end
        offsets[s.id] = copy_from(s.log, before)
      end
    end
    io.stdout:flush()
    -- The status was read before the logs: everything written before the end is out by now.
    if done then
      return 0
    end
    tide.sleep(POLL)
  end
end

function M.run(ctx, args)
  local flags = { ["-f"] = "follow", ["--follow"] = "follow" }
  local opts, pos = q.parse("logs", ctx, args, { flags = flags })
  if #pos > 2 then
    q.usage("logs", "unexpected argument '%s'", pos[3])
  end
  local builds = require("tide.cli.builds")
  if builds.is_build_key(pos[1]) and not opts.follow then
    return builds.logs(ctx, pos[1], pos[2])
  end
  local run_id = (not pos[1] or pos[1]:match("^%d+$")) and q.id("logs", "RUN", pos[1])
    or q.usage("logs", "RUN must be a run number or a build id, not '%s'", pos[1])
  local span_id = pos[2] and q.id("logs", "SPAN", pos[2])
  if opts.follow and ctx.json then
    q.usage("logs", "-f and --json do not go together")
  end
  local store = q.open(ctx)
  q.run(ctx, store, run_id)
  if opts.follow then
    return follow(ctx, store, run_id, span_id)
  end
  local spans = log_spans(ctx, store, run_id, span_id)
  if ctx.json then
    local list = {}
    for i, s in ipairs(spans) do
      list[i] = { span = s.id, kind = s.kind, name = s.name, status = s.status, log = s.log,
        output = read_all(s.log) }
    end
    q.print_json(require("tide.json").array(list))
    return 0
  end
  for i, s in ipairs(spans) do
    if not span_id then
      io.stdout:write(i > 1 and "\n" or "", header(s))
    end
    copy_from(s.log, 0)
  end
  return 0
end

return M
