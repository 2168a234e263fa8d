--- tide.buildspec.cache: CodeBuild's local custom cache. The files cache.paths selects are saved
--- after a build under HOME/builds/cache/PROJECT/KEY and copied back before the next build of
--- the same project. KEY is cache.key (default "default"); a restore tries cache.key and then
--- cache.fallback-keys in order; cache.action restore or save does only that half.
--- Paths inside the source directory are kept as src/REL, absolute ones as abs/PATH.
---
--- The build controls its source directory, links included, and a cache outlives the build:
--- a restore therefore never goes through a link on the way to a destination (a build of
--- another project on the same source could have turned a directory into a link to any host
--- path), and absolute paths are saved and restored only without the sandbox, where the build
--- could write them itself; inside it they are not the build's to write, and are skipped.
local fs = require("tide.fs")
local uv = require("tide.uv")
local files = require("tide.buildspec.files")

local M = {}

local function safe(key)
  return (key:gsub("[^%w._-]", "_"))
end

local function key_dir(root, project, key)
  return string.format("%s/cache/%s/%s", root, safe(project), safe(key or "default"))
end

local function inside(path, root)
  return path:sub(1, #root + 1) == root .. "/"
end

--- Makes the directories above dst below root, never through a link. Returns true, or nil and
--- why dst is skipped.
local function safe_parent(root, dst)
  local rel = root == "/" and dst:sub(2) or dst:sub(#root + 2)
  local dir = root == "/" and "" or root
  local parts = {}
  for seg in rel:gmatch("[^/]+") do
    parts[#parts + 1] = seg
  end
  for i = 1, #parts - 1 do
    dir = dir .. "/" .. parts[i]
    local st = uv.fs_lstat(dir)
    if not st then
      local ok = uv.fs_mkdir(dir, tonumber("755", 8))
      st = ok and uv.fs_lstat(dir)
    end
    if not st then
      return nil, string.format("'%s' cannot be made", dir)
    elseif st.type == "link" then
      return nil, string.format("'%s' is a link", dir)
    elseif st.type ~= "directory" then
      return nil, string.format("'%s' is not a directory", dir)
    end
  end
  local st = uv.fs_lstat(dst)
  if st and st.type == "directory" then
    return nil, string.format("'%s' is a directory", dst)
  end
  if st then
    -- A link is removed itself, never followed.
    os.remove(dst)
  end
  return true
end

--- Where a cached entry goes, with the root it must stay under; nil and why it is skipped.
local function destination(rel, b)
  local src = b.src:gsub("/+$", "")
  if rel:sub(1, 4) == "src/" then
    return files.join(src, rel:sub(5)), src
  elseif rel:sub(1, 4) == "abs/" then
    local dst = "/" .. rel:sub(5)
    if inside(dst, src) then
      return dst, src
    elseif b.sandboxed then
      return nil, nil, string.format("'%s' is outside the paths the sandboxed build may write",
        dst)
    end
    return dst, "/"
  end
  return nil
end

--- Copies the cache back into place. Returns the key restored from, or nil.
function M.restore(c, b, log)
  if not c or c.action == "save" then
    return nil
  end
  local keys = { c.key or "default" }
  for _, k in ipairs(c.fallback_keys or {}) do
    keys[#keys + 1] = k
  end
  for _, k in ipairs(keys) do
    local dir = key_dir(b.builds_root, b.project, k)
    if fs.exists(dir) then
      local n = 0
      for p, typ in assert(fs.walk(dir)) do
        if typ ~= "directory" then
          local dst, root, why = destination(p:sub(#dir + 2), b)
          local ok = dst ~= nil
          if dst then
            ok, why = safe_parent(root, dst)
          end
          if ok and fs.copy_tree(p, dst) then
            n = n + 1
          elseif why then
            log(string.format("[tide] warning: cache: '%s' not restored: %s", dst or p, why))
          end
        end
      end
      log(string.format("[Container] restored %d cached file%s (key %s)", n, n == 1 and "" or "s",
        k))
      return k
    end
  end
  log("[Container] no cache to restore")
  return nil
end

--- Saves the selected files, replacing the previous cache of the key. Returns the file count.
function M.save(c, b, log)
  if not c or c.action == "restore" then
    return nil
  end
  local paths = {}
  local src = b.src:gsub("/+$", "")
  for _, p in ipairs(c.paths) do
    if p:sub(1, 1) == "/" and inside(p, src) then
      p = p:sub(#src + 2)
    end
    if p:sub(1, 1) == "/" and b.sandboxed then
      log(string.format("[tide] warning: cache: '%s' not saved: outside the paths the "
        .. "sandboxed build may write", p))
    else
      paths[#paths + 1] = p
    end
  end
  local sel, why = files.select(b.src, { files = paths, keep_links = true }, b.home,
    not b.sandboxed)
  if why then
    log("[tide] warning: cache: " .. why .. ": not saved")
  end
  local dir = key_dir(b.builds_root, b.project, c.key)
  local tmp = dir .. ".tmp-" .. b.uuid
  assert(fs.mkdir_p(tmp))
  for _, f in ipairs(sel) do
    if f.path:sub(1, #b.src + 1) == b.src .. "/" then
      f.rel = "src/" .. f.path:sub(#b.src + 2)
    else
      f.rel = "abs" .. f.path
    end
  end
  local ok, msg = files.copy(sel, tmp, true)
  if not ok then
    fs.rm_r(tmp)
    log("[Container] cache not saved: " .. tostring(msg))
    return nil
  end
  if fs.exists(dir) then
    fs.rm_r(dir)
  end
  assert(uv.fs_rename(tmp, dir))
  log(string.format("[Container] saved %d file%s to the cache", #sel, #sel == 1 and "" or "s"))
  return #sel
end

return M
