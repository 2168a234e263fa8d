--- tide.buildspec.files: which files a `files` list selects, as artifacts, reports and the cache
--- read it: patterns relative to the base directory (or the source directory), `**` crossing
--- directories, a matched directory standing for everything below it, exclude-paths dropping
--- matches, discard-paths flattening. Absolute patterns name files outside the source directory
--- on purpose; relative ones never leave it (schema refuses `..`).
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

--- Selects files. g: {files, base_directory, exclude_paths, discard_paths}. skip: a directory
--- never selected when it lies inside src (tide's own home, which defaults to SRC/.tide); a
--- source that itself lies under it (a pipeline's work copy) is selected normally. Returns a
--- list of {path = absolute source path, rel = path inside the result, type = "file"|"link"},
--- sorted by rel, and an error message for a name collision under discard-paths.
function M.select(src, g, skip)
  if skip then
    local root = src:gsub("/+$", "")
    if skip:sub(1, #root + 1) ~= root .. "/" then
      skip = nil
    end
  end
  local seen, out = {}, {}
  local collision
  local function add(path, rel, typ)
    if skip and (path == skip or path:sub(1, #skip + 1) == skip .. "/") then
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
    seen[rel] = item
    out[#out + 1] = item
  end
  for _, base in ipairs(M.bases(src, g.base_directory)) do
    for _, pat in ipairs(g.files) do
      local cwd = pat:sub(1, 1) ~= "/" and base or nil
      local matches = fs.glob(pat, { cwd = cwd, hidden = true, exclude = g.exclude_paths })
      for _, m in ipairs(matches or {}) do
        local full = cwd and join(base, m) or m
        local rel = cwd and m or m:gsub("^/+", "")
        local st = uv.fs_lstat(full)
        local inside_skip = skip and (full == skip or full:sub(1, #skip + 1) == skip .. "/")
        if inside_skip then
          st = nil
        end
        if st and st.type == "directory" then
          for p, typ in assert(fs.walk(full)) do
            local r = rel .. p:sub(#full + 1)
            local excluded = false
            for _, ex in ipairs(g.exclude_paths or {}) do
              if fs.match(ex, r, { hidden = true }) then
                excluded = true
              end
            end
            if not excluded and typ ~= "directory" then
              add(p, r, typ)
            end
          end
        elseif st then
          add(full, rel, st.type)
        end
      end
    end
  end
  table.sort(out, function(a, b)
    return a.rel < b.rel
  end)
  return out, collision
end

--- Copies selected files into dir (which must exist). Links are kept as links with
--- keep_links, else their targets are copied.
function M.copy(list, dir, keep_links)
  for _, f in ipairs(list) do
    local dst = join(dir, f.rel)
    local parent = dst:match("^(.*)/[^/]*$")
    if parent then
      assert(fs.mkdir_p(parent))
    end
    local from = f.path
    if f.type == "link" and not keep_links then
      local real = uv.fs_realpath(from)
      if not real then
        return nil, string.format("'%s' is a dangling link", f.path)
      end
      from = real
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
