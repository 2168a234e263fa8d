--- tide artifact SUBCOMMAND: the artifact store from the command line (see docs/artifacts.md).
local tide = require("tide")
local q = require("tide.cli.query")

local M = {}

local USAGE = [[
usage: tide artifact push PATH --package P --version V [--namespace N] [--repo R]
                          [--name ASSET] [--sha256 HEX] [--unfinished]
       tide artifact pull REF DEST [--asset NAME]
       tide artifact ls [PACKAGE] [--all]
       tide artifact info REF
       tide artifact versions PACKAGE [--all]
       tide artifact tree REF
       tide artifact publish|unlist|archive|dispose|delete REF
       tide artifact verify [REF | --all]
       tide artifact gc [--dry-run] [--grace SECONDS]
       tide artifact retain PACKAGE [--keep N] [--days D] [--dry-run]
       tide artifact repo NAME [UPSTREAM...]     (an upstream: a repository or /path/to/home#repo)
       tide artifact repos
       tide artifact lookup REF [--repo R]      (what a downstream store runs: read-only, JSON)
REF is [NAMESPACE/]PACKAGE@VERSION (VERSION may be latest); --repo R (default main) and
--namespace N apply to every subcommand.]]

local STATUS_OF = { publish = "Published", unlist = "Unlisted", archive = "Archived",
  dispose = "Disposed" }

local SPEC = {
  flags = { ["--unfinished"] = "unfinished", ["--all"] = "all", ["--dry-run"] = "dry_run",
    ["--no-upstream"] = "no_upstream", ["--help"] = "help", ["-h"] = "help" },
  values = { ["--package"] = "package", ["--version"] = "version", ["--namespace"] = "namespace",
    ["--repo"] = "repo", ["--name"] = "name", ["--sha256"] = "sha256", ["--asset"] = "asset",
    ["--grace"] = "grace", ["--keep"] = "keep", ["--days"] = "days", ["--budget"] = "budget",
    ["--seen"] = "seen" },
}

local function usage(fmt, ...)
  q.usage("artifact", fmt, ...)
end

local function out_json(ctx, v)
  if ctx.json then
    q.print_json(v)
    return true
  end
end

local function size(n)
  if n >= 1 << 30 then
    return ("%.1f GiB"):format(n / (1 << 30))
  elseif n >= 1 << 20 then
    return ("%.1f MiB"):format(n / (1 << 20))
  elseif n >= 1 << 10 then
    return ("%.1f KiB"):format(n / (1 << 10))
  end
  return n .. " B"
end

local function table_out(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      widths[i] = math.max(widths[i] or 0, #tostring(cell))
    end
  end
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      cells[i] = i < #row and ("%-" .. widths[i] .. "s"):format(tostring(cell)) or tostring(cell)
    end
    io.stdout:write(table.concat(cells, "  "), "\n")
  end
end

-- Names from a store can hold any byte but NUL: control characters, backslashes and invalid
-- UTF-8 are shown escaped so that they cannot drive the terminal or hide in the output.
local function shown(s)
  s = tostring(s)
  local out, i = {}, 1
  while i <= #s do
    local ok, cp = pcall(utf8.codepoint, s, i)
    local len = ok and #utf8.char(cp) or 1
    if not ok then
      out[#out + 1] = ("\\x%02x"):format(s:byte(i))
    elseif cp == 92 then
      out[#out + 1] = "\\\\"
    elseif cp == 9 then
      out[#out + 1] = "\\t"
    elseif cp == 10 then
      out[#out + 1] = "\\n"
    elseif cp < 32 or cp == 127 then
      out[#out + 1] = ("\\x%02x"):format(cp)
    elseif cp >= 0x80 and cp < 0xa0 then
      out[#out + 1] = ("\\u{%x}"):format(cp)
    else
      out[#out + 1] = s:sub(i, i + len - 1)
    end
    i = i + len
  end
  return table.concat(out)
end

local function ref_of(v)
  return shown(require("tide.artifact").ref_string(v))
end

local function show_version(ctx, v)
  if out_json(ctx, v) then
    return
  end
  io.stdout:write(("%s  %s  repo %s  %s  %d file%s\n"):format(ref_of(v), v.status, v.repo,
    size(v.size), v.files, v.files == 1 and "" or "s"))
  for _, a in ipairs(v.assets or {}) do
    io.stdout:write(("  %s  %s  %s  %s\n"):format(shown(a.name), a.kind, a.sha256, size(a.size)))
  end
end

local function int_opt(name, s)
  local n = s and math.tointeger(tonumber(s))
  if s and (not n or n < 0) then
    usage("%s must be a whole number >= 0, not '%s'", name, s)
  end
  return n
end

local commands = {}

function commands.push(ctx, opts, pos, art)
  local path = pos[1] or usage("push needs a file or a directory")
  if pos[2] then
    usage("unexpected argument '%s'", pos[2])
  end
  if not opts.package then
    usage("push needs --package")
  end
  if not opts.version then
    usage("push needs --version")
  end
  local v = art.put(path, { package = opts.package, version = opts.version,
    namespace = opts.namespace, repo = opts.repo, name = opts.name, sha256 = opts.sha256,
    unfinished = opts.unfinished })
  if not out_json(ctx, v) then
    io.stdout:write(("%s@%s  %s  %s  %d file%s  sha256 %s\n"):format(
      ref_of({ namespace = v.namespace, package = v.package }), v.version, v.status, size(v.size),
      v.files, v.files == 1 and "" or "s", v.sha256))
  end
  return 0
end

function commands.pull(ctx, opts, pos, art)
  local ref = pos[1] or usage("pull needs a reference (PACKAGE@VERSION)")
  local dest = pos[2] or usage("pull needs a destination")
  local v = art.get(ref, dest, { repo = opts.repo, namespace = opts.namespace,
    asset = opts.asset })
  if not out_json(ctx, v) then
    io.stdout:write(("%s  %d file%s  %s  -> %s\n"):format(ref_of(v), v.files,
      v.files == 1 and "" or "s", size(v.size), dest))
  end
  return 0
end

function commands.ls(ctx, opts, pos, art)
  if pos[1] then
    return commands.versions(ctx, opts, pos, art)
  end
  local list = art.list({ repo = opts.repo })
  if out_json(ctx, list) then
    return 0
  end
  if #list == 0 then
    io.stdout:write("no packages in repository '", opts.repo or "main", "'\n")
    return 0
  end
  local rows = { { "PACKAGE", "LATEST", "VERSIONS" } }
  for _, p in ipairs(list) do
    rows[#rows + 1] = { ref_of(p), p.latest or "-", p.versions }
  end
  table_out(rows)
  return 0
end

function commands.versions(ctx, opts, pos, art)
  local pkg = pos[1] or usage("versions needs a package")
  local list = art.versions(pkg, { repo = opts.repo, namespace = opts.namespace, all = opts.all })
  if out_json(ctx, list) then
    return 0
  end
  local rows = { { "VERSION", "STATUS", "SIZE", "FILES", "CREATED" } }
  for _, v in ipairs(list) do
    rows[#rows + 1] = { v.version, v.status, size(v.size), v.files, q.time(v.created) }
  end
  table_out(rows)
  return 0
end

function commands.info(ctx, opts, pos, art)
  local ref = pos[1] or usage("info needs a reference")
  show_version(ctx, art.info(ref, { repo = opts.repo, namespace = opts.namespace,
    upstream = not opts.no_upstream }))
  return 0
end

function commands.tree(ctx, opts, pos, art)
  local ref = pos[1] or usage("tree needs a reference")
  local entries = art.tree(ref, { repo = opts.repo, namespace = opts.namespace,
    asset = opts.asset })
  if out_json(ctx, entries) then
    return 0
  end
  for _, e in ipairs(entries) do
    if e.type == "link" then
      io.stdout:write(("l          %s -> %s\n"):format(shown(e.path), shown(e.target)))
    else
      io.stdout:write(("%s %04o %s %s\n"):format(e.type == "file" and "f" or "d", e.mode,
        e.type == "file" and ("%10d"):format(e.size) or ("%10s"):format(""), shown(e.path)))
    end
  end
  return 0
end

local function set_status(word, status)
  return function(ctx, opts, pos, art)
    local ref = pos[1] or usage("%s needs a reference (PACKAGE@VERSION)", word)
    local version = ref:match("@(.*)$")
    if not version or version == "" or version == "latest" then
      usage("%s needs an exact version: %s@VERSION, not '%s'", word, ref:match("^[^@]*"), ref)
    end
    show_version(ctx, art.set_status(ref, status, { repo = opts.repo,
      namespace = opts.namespace }))
    return 0
  end
end
for word, status in pairs(STATUS_OF) do
  commands[word] = set_status(word, status)
end

function commands.delete(ctx, opts, pos, art)
  local ref = pos[1] or usage("delete needs a reference")
  art.delete(ref, { repo = opts.repo, namespace = opts.namespace })
  if not out_json(ctx, { deleted = ref }) then
    io.stdout:write("deleted ", ref, "\n")
  end
  return 0
end

function commands.verify(ctx, opts, pos, art)
  if not pos[1] and not opts.all then
    usage("verify needs a reference or --all")
  end
  local ok, report = art.verify(pos[1], { repo = opts.repo, namespace = opts.namespace })
  if not out_json(ctx, report) then
    for _, b in ipairs(report.bad) do
      io.stdout:write(("BAD  %s  asset %s: %s\n"):format(b.ref, b.asset, b.message))
    end
    io.stdout:write(("%d version%s, %d blob%s checked, %d bad\n"):format(report.checked,
      report.checked == 1 and "" or "s", report.files, report.files == 1 and "" or "s",
      #report.bad))
  end
  return ok and 0 or 1
end

function commands.gc(ctx, opts, pos, art)
  if pos[1] then
    usage("unexpected argument '%s'", pos[1])
  end
  local st = art.gc({ dry_run = opts.dry_run, grace = int_opt("--grace", opts.grace) })
  if not out_json(ctx, st) then
    io.stdout:write(("%s %d blob%s (%s), %d temporary file%s, %d stat cache%s; %d kept\n"):format(
      opts.dry_run and "would remove" or "removed", st.removed, st.removed == 1 and "" or "s",
      size(st.bytes), st.tmp_removed, st.tmp_removed == 1 and "" or "s", st.cache_removed,
      st.cache_removed == 1 and "" or "s", st.kept))
  end
  for _, p in ipairs(st.problems) do
    io.stderr:write(("tide artifact gc: %s: its manifest cannot be read (%s); kept what it "
      .. "still names, run verify\n"):format(p.ref and (p.ref .. " asset " .. shown(p.asset)
      .. " in repository " .. p.repo) or ("released tree " .. p.sha256), p.message))
  end
  return #st.problems == 0 and 0 or 1
end

function commands.retain(ctx, opts, pos, art)
  local pkg = pos[1] or usage("retain needs a package")
  local days = opts.days and tonumber(opts.days)
  if opts.days and (not days or days < 0) then
    usage("--days must be a number >= 0, not '%s'", opts.days)
  end
  local gone = art.retain(pkg, { repo = opts.repo, namespace = opts.namespace,
    keep = int_opt("--keep", opts.keep), days = days, dry_run = opts.dry_run })
  if not out_json(ctx, gone) then
    for _, v in ipairs(gone) do
      io.stdout:write(opts.dry_run and "would dispose " or "disposed ", pkg, "@", v, "\n")
    end
  end
  return 0
end

function commands.repo(ctx, _, pos, art)
  local name = pos[1] or usage("repo needs a name")
  local ups = table.move(pos, 2, #pos, 1, {})
  local r = art.repo(name, { upstreams = #ups > 0 and ups or nil })
  if not out_json(ctx, r) then
    io.stdout:write(r.name, #r.upstreams > 0 and ("  upstreams: " .. table.concat(r.upstreams,
      ", ")) or "", "\n")
  end
  return 0
end

function commands.repos(ctx, _, _, art)
  local list = art.repos()
  if out_json(ctx, list) then
    return 0
  end
  for _, r in ipairs(list) do
    io.stdout:write(r.name, #r.upstreams > 0 and ("  upstreams: " .. table.concat(r.upstreams,
      ", ")) or "", "\n")
  end
  return 0
end

-- The read-only answer to another store's upstream search: always JSON on stdout, errors too.
local function lookup(ctx, args)
  local json = require("tide.json")
  local ok, res = pcall(function()
    local opts, pos = q.parse("artifact lookup", ctx, args, SPEC)
    local ref = pos[1] or usage("lookup needs a reference")
    require("tide.cli").open_store(ctx, true)
    local seen = opts.seen and json.decode(opts.seen) or {}
    return require("tide.artifact").lookup(ref, { repo = opts.repo, namespace = opts.namespace,
      budget = int_opt("--budget", opts.budget), seen = seen })
  end)
  if not ok then
    local e = tide.is_error(res) and res or { code = "EIO", message = tostring(res) }
    io.stdout:write(json.encode({ error = { code = e.code, message = e.message } }), "\n")
    return 1
  end
  io.stdout:write(json.encode(res), "\n")
  return 0
end

function M.run(ctx, args)
  local sub = args[1]
  if not sub or sub == "help" or sub == "--help" or sub == "-h" then
    io.stdout:write(USAGE, "\n")
    return sub and 0 or 2
  end
  if sub == "lookup" then
    return lookup(ctx, table.move(args, 2, #args, 1, {}))
  end
  local fn = commands[sub] or usage("unknown subcommand '%s'", sub)
  local opts, pos = q.parse("artifact " .. sub, ctx, table.move(args, 2, #args, 1, {}), SPEC)
  if opts.help then
    io.stdout:write(USAGE, "\n")
    return 0
  end
  require("tide.cli").open_store(ctx)
  local art = require("tide.artifact")
  local ok, rc = pcall(fn, ctx, opts, pos, art)
  if ok then
    return rc
  end
  if tide.is_error(rc) and rc.code ~= "EUSAGE" and rc.code ~= "EINPUT" and rc.code ~= "ECANCELED"
    and rc.code ~= "ETIMEDOUT" then
    io.stderr:write("tide artifact ", sub, ": ", tostring(rc.message), "\n")
    return 1
  end
  error(rc, 0)
end

return M
