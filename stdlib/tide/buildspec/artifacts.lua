--- tide.buildspec.artifacts: UPLOAD_ARTIFACTS. The primary artifact and each secondary artifact
--- become a directory under the output directory (OUTPUT/NAME, NAME being the evaluated `name`,
--- else "primary" or the identifier), with the sha256 of every file. Everything is written to a
--- staging directory first and renamed into place at the end, so a failure leaves no half-written
--- output. With tide.artifact present, each artifact is also put in the artifact store.
local fs = require("tide.fs")
local uv = require("tide.uv")
local files = require("tide.buildspec.files")
local envmod = require("tide.buildspec.env")

local M = {}

local function valid_name(n)
  if n == "" or n:sub(1, 1) == "/" then
    return false
  end
  for seg in n:gmatch("[^/]+") do
    if seg == ".." or seg == "." then
      return false
    end
  end
  return true
end

--- Produces every artifact of spec.artifacts. b: the build (src, uuid, project, number,
--- output, dir). expand(text) evaluates a name with the shell. Returns the list of artifact
--- records, or nil and a message (the phase then fails).
function M.upload(spec, b, expand, log)
  local a = spec.artifacts
  if not a then
    return {}
  end
  local list = { { spec = a, id = nil } }
  for _, s in ipairs(a.secondary or {}) do
    list[#list + 1] = { spec = s, id = s.id }
  end
  local out_root = b.output or (b.dir .. "/artifacts")
  local made_root = not fs.exists(out_root)
  assert(fs.mkdir_p(out_root))
  local stage = string.format("%s/.tide-staging-%s", out_root, b.uuid)
  if fs.exists(stage) then
    fs.rm_r(stage)
  end
  assert(fs.mkdir_p(stage))
  local records = {}
  local ok, err = pcall(function()
    for _, item in ipairs(list) do
      local s = item.spec
      local name = item.id or "primary"
      if s.name then
        local v = expand(s.name)
        if v and v ~= "" then
          name = v
        end
      end
      if not valid_name(name) then
        error(string.format("artifact name '%s' is not a relative path inside the output", name), 0)
      end
      local sel, collision = files.select(b.src, s, b.home, not b.sandboxed)
      if collision then
        error(collision, 0)
      end
      if #sel == 0 then
        error(string.format("CLIENT_ERROR: no matching artifact paths found for %s",
          item.id and ("secondary artifact '" .. item.id .. "'") or "the primary artifact"), 0)
      end
      local dir = stage .. "/" .. name
      assert(fs.mkdir_p(dir))
      local cok, cmsg = files.copy(sel, dir, s.enable_symlinks)
      if not cok then
        error(cmsg, 0)
      end
      local rels = {}
      for _, f in ipairs(sel) do
        local st = uv.fs_lstat(dir .. "/" .. f.rel)
        if st and st.type == "file" then
          rels[#rels + 1] = f.rel
        end
      end
      local sums = files.sha256(dir, rels)
      local entries = {}
      for _, f in ipairs(sel) do
        entries[#entries + 1] = { path = f.rel, sha256 = sums[f.rel], from = f.path }
      end
      records[#records + 1] = { identifier = item.id, name = name, files = entries,
        path = out_root .. "/" .. name }
      log(string.format("[Container] artifact %s: %d file%s", name, #entries,
        #entries == 1 and "" or "s"))
    end
  end)
  if not ok then
    fs.rm_r(stage)
    if made_root then
      -- Removes only an empty directory: a failed upload leaves no trace of an output.
      uv.fs_rmdir(out_root)
    end
    return nil, type(err) == "table" and err.message or tostring(err)
  end
  -- Everything is there: move each artifact into place, replacing an older one.
  for _, r in ipairs(records) do
    local final = r.path
    if fs.exists(final) then
      fs.rm_r(final)
    end
    local parent = final:match("^(.*)/[^/]*$")
    assert(fs.mkdir_p(parent))
    assert(uv.fs_rename(stage .. "/" .. r.name, final))
  end
  fs.rm_r(stage)
  local store = envmod.optional("tide.artifact")
  for _, r in ipairs(records) do
    if store then
      local put = store.put_dir(r.path, { package = b.project .. (r.identifier and
        ("-" .. r.identifier) or ""), version = tostring(b.number) })
      r.store_sha256 = put and put.sha256
    end
  end
  return records
end

return M
