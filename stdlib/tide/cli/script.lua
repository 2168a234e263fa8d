--- tide FILE.lua [ARGS]: runs a script as the main task and records it as a run. A script that
--- returns a pipeline table runs that pipeline (tide.pipeline).
local tide = require("tide")
local json = require("tide.json")

local M = {}

function M.run(ctx, file, args)
  local chunk, err = loadfile(file)
  if not chunk then
    -- "cannot open x.lua" or "x.lua:3: syntax error near ...": already names file and line.
    error(tide.error("EINPUT", err), 0)
  end
  local cli = require("tide.cli")
  cli.open_store(ctx)
  local runtime = require("tide._runtime")
  local argv = { file }
  table.move(args, 1, #args, 2, argv)
  local id, msg = runtime.begin_run(file, json.encode(argv))
  if not id then
    error(tide.error("EINPUT", msg), 0)
  end
  runtime.start_view(ctx.plain and "plain" or "auto")
  -- The global arg as the stand-alone lua sets it.
  local a = { [-1] = ctx.exe, [0] = file }
  table.move(args, 1, #args, 1, a)
  _G.arg = a
  local result = chunk(table.unpack(args))
  if require("tide.pipeline").is_pipeline(result) then
    -- A script that returns a pipeline declaration is run as a pipeline (--var, --dry-run).
    return require("tide.pipeline.cli").run_script(file, args, result)
  end
  return 0
end

return M
