--- tide.buildspec.files: which files a `files` list selects, as artifacts, reports and the cache
--- read it: patterns relative to the base directory (or the source directory), `**` crossing
--- directories, a matched directory standing for everything below it, exclude-paths dropping
--- matches, discard-paths flattening. Absolute patterns (cache.paths only) name files outside
--- the source directory on purpose; relative ones never leave it: schema refuses `..`, and a
--- file reached through a directory link leading out of the source, or a link whose target
--- lies outside it, is never read (the build controls every link in its source and could
--- otherwise point one at any host file tide can read).
local tide = require("tide")
local fs = require("tide.fs")
local uv = require("tide.uv")

local M = {}

local function has_wild(p)
  return p:find("[%*%?%[]") ~= nil
end

local function join(a, b)
  if b:sub(1, 1) == "/" then
    return b
  end
  if a == "" or a == "." then
    return b
  end
  return (a:gsub("/+$", "")) .. "/" .. b
end
M.join = join

local function basename(p)
  return p:match("([^/]+)/*$") or p
end

local function dirname(p)
  return p:match("^(.*)/[^/]*$") or "."
end

local function under(path, root)
  return path == root or root == "/" or path:sub(1, #root + 1) == root .. "/"
end

--- The real path of a directory, memoized for one selection.
local function real_dir(memo, d)
  local r = memo[d]
  if r == nil then
    r = uv.fs_realpath(d) or false
    memo[d] = r
  end
  return r
end

--- The base directories: `base` (a name or a pattern like 'my-build*') under src, or src.
function M.bases(src, base)
  if not base then
    return { src }
  end
  local full = join(src, base)
  if not has_wild(base) then
    local st = uv.fs_stat(full)
    return (st and st.type == "directory") and { full } or {}
  end
  local out = {}
  local cwd = base:sub(1, 1) ~= "/" and src or nil
  local matches = assert(fs.glob(base, { cwd = cwd, hidden = true }))
  for _, m in ipairs(matches) do
    local p = join(src, m)
    local st = uv.fs_stat(p)
    if st and st.type == "directory" then
      out[#out + 1] = p
    end
  end
  return out
end

--- The bases that stay inside src once links are resolved, and a message for the first one
--- that does not.
local function contained_bases(src, base, host)
  if base and base:sub(1, 1) == "/" then
    if host then
      return M.bases(src, base)
    end
    return {}, string.format("'%s' is absolute: a sandboxed build's files outside the source "
      .. "are not the host's", base)
  end
  local root = uv.fs_realpath(src)
  local out, err = {}, nil
  for _, d in ipairs(M.bases(src, base)) do
    local r = uv.fs_realpath(d)
    if root and r and under(r, root) then
      out[#out + 1] = d
    elseif not err then
      err = string.format("'%s' leads out of the source directory through a link", d)
    end
  end
  return out, err
end

--- Selects files. g: {files, base_directory, exclude_paths, discard_paths}. skip: a directory
--- never selected when it lies inside src (tide's own home, which defaults to SRC/.tide); a
--- source that itself lies under it (a pipeline's work copy) is selected normally. Returns a
--- list of {path = absolute source path, rel = path inside the result, type = "file"|"link",
--- real = the file a link resolves to, nil when dangling}, sorted by rel, and an error message:
--- a name collision under discard-paths, or the first path left out because it leads out of
--- the source directory. g.keep_links (or g.enable_symlinks) keeps a link whose target lies
--- outside: it is then copied as a link, never read through. host: absolute patterns and
--- base directories are read from the host (a build without the sandbox, which could read them
--- itself); without it they are refused.
function M.select(src, g, skip, host)
  if skip then
    local root = src:gsub("/+$", "")
    if skip:sub(1, #root + 1) ~= root .. "/" then
      skip = nil
    end
  end
  local seen, out = {}, {}
  local collision, escape
  local root = uv.fs_realpath(src)
  local memo = {}
  local keep_links = g.keep_links or g.enable_symlinks
  -- nil when path may be read, else why not. Absolute patterns are checked by their caller.
  local function escapes(path, typ, absolute)
    if absolute then
      return nil
    end
    local parent = real_dir(memo, dirname(path))
    if not (root and parent and under(parent, root)) then
      return string.format("'%s' lies behind a link that leads out of the source directory",
        path)
    end
    if typ == "link" and not keep_links then
      local real = uv.fs_realpath(path)
      if real and not under(real, root) then
        return string.format("'%s' is a link to '%s', outside the source directory (use "
          .. "enable-symlinks to keep it as a link)", path, real)
      end
    end
    return nil
  end
  local function add(path, rel, typ, absolute)
    if skip and (path == skip or path:sub(1, #skip + 1) == skip .. "/") then
      return
    end
    local why = escapes(path, typ, absolute)
    if why then
      escape = escape or why
      return
    end
    if g.discard_paths then
      rel = basename(rel)
    end
    local prev = seen[rel]
    if prev then
      if prev.path ~= path and not collision then
        collision = string.format("'%s' and '%s' both become '%s' with discard-paths",
          prev.path, path, rel)
      end
      return
    end
    local item = { path = path, rel = rel, type = typ }
    if typ == "link" then
      item.real = uv.fs_realpath(path)
    end
    seen[rel] = item
    out[#out + 1] = item
  end
  local bases
  bases, escape = contained_bases(src, g.base_directory, host)
  local abs_base = g.base_directory and g.base_directory:sub(1, 1) == "/"
  for _, base in ipairs(bases) do
    for _, pat in ipairs(g.files) do
      local cwd = pat:sub(1, 1) ~= "/" and base or nil
      -- `**` never enters a linked directory, but the literal directories a pattern starts
      -- with are opened as given: one that is a link out of the source is not listed at all.
      local lead = cwd and pat:match("^([^%*%?%[]*)/") or nil
      local lead_real = lead and not abs_base and real_dir(memo, join(base, lead))
      local matches
      if not cwd and not host then
        escape = escape or string.format("'%s' is absolute: a sandboxed build's files outside "
          .. "the source are not the host's", pat)
      elseif lead_real and not under(lead_real, root or "\0") then
        escape = escape or string.format("'%s' leads out of the source directory through a "
          .. "link", join(base, lead))
      else
        matches = fs.glob(pat, { cwd = cwd, hidden = true, exclude = g.exclude_paths })
      end
      for _, m in ipairs(matches or {}) do
        local full = cwd and join(base, m) or m
        local rel = cwd and m or m:gsub("^/+", "")
        local st = uv.fs_lstat(full)
        local inside_skip = skip and (full == skip or full:sub(1, #skip + 1) == skip .. "/")
        if inside_skip then
          st = nil
        end
        local dir_out = st and st.type == "directory" and cwd and not abs_base
          and escapes(full .. "/.", "directory")
        if dir_out then
          escape = escape or dir_out
        elseif st and st.type == "directory" then
          for p, typ in assert(fs.walk(full)) do
            local r = rel .. p:sub(#full + 1)
            local excluded = false
            for _, ex in ipairs(g.exclude_paths or {}) do
              if fs.match(ex, r, { hidden = true }) then
                excluded = true
              end
            end
            if not excluded and typ ~= "directory" then
              add(p, r, typ, not cwd or abs_base)
            end
          end
        elseif st then
          add(full, rel, st.type, not cwd or abs_base)
        end
      end
    end
  end
  table.sort(out, function(a, b)
    return a.rel < b.rel
  end)
  return out, collision or escape
end

--- Copies selected files into dir (which must exist). Links are kept as links with
--- keep_links, else what they resolve to (inside the source, as select checked) is copied.
function M.copy(list, dir, keep_links)
  for _, f in ipairs(list) do
    local dst = join(dir, f.rel)
    local parent = dst:match("^(.*)/[^/]*$")
    if parent then
      assert(fs.mkdir_p(parent))
    end
    local from = f.path
    if f.type == "link" and not keep_links then
      if not f.real then
        return nil, string.format("'%s' is a dangling link", f.path)
      end
      from = f.real
    end
    local ok, msg = fs.copy_tree(from, dst)
    if not ok then
      return nil, msg
    end
  end
  return true
end

--- sha256 of each file below dir: {rel = hex}.
function M.sha256(dir, rels)
  local proc = require("tide.proc")
  local out = {}
  local i = 1
  while i <= #rels do
    local argv = { "sha256sum", "--", cwd = dir, log = false, max_output = 1 << 26 }
    for j = i, math.min(#rels, i + 399) do
      argv[#argv + 1] = rels[j]
    end
    i = i + 400
    local r = proc.run(argv)
    if not r.ok then
      error(tide.error("EIO", "sha256sum failed: " .. (r.stderr or "")), 0)
    end
    for hex, name in r.stdout:gmatch("(%x+) [ *]([^\n]+)\n") do
      out[name] = hex
    end
  end
  return out
end

return M
