--- tide.buildspec.cache: CodeBuild's local custom cache. The files cache.paths selects are saved
--- after a build under HOME/builds/cache/PROJECT/KEY and copied back before the next build of
--- the same project. KEY is cache.key (default "default"); a restore tries cache.key and then
--- cache.fallback-keys in order; cache.action restore or save does only that half.
--- Paths inside the source directory are kept as src/REL, absolute ones as abs/PATH.
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
          local rel = p:sub(#dir + 2)
          local dst
          if rel:sub(1, 4) == "src/" then
            dst = files.join(b.src, rel:sub(5))
          elseif rel:sub(1, 4) == "abs/" then
            dst = "/" .. rel:sub(5)
          end
          if dst then
            local parent = dst:match("^(.*)/[^/]*$")
            if parent and parent ~= "" then
              fs.mkdir_p(parent)
            end
            if uv.fs_lstat(dst) then
              os.remove(dst)
            end
            if fs.copy_tree(p, dst) then
              n = n + 1
            end
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
  local sel = files.select(b.src, { files = c.paths }, b.home)
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
