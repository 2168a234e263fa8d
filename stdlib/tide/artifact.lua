--- tide.artifact: the artifact store. Content-addressed blobs (tide._artifact, on the thread pool)
--- under $TIDE_HOME/artifacts, indexed in state.db with CodeArtifact's generic-format model:
--- repositories, namespaces, packages, versions and their assets.
---
--- A version is written in two steps: its blobs are made durable first, then one transaction
--- records the version and its assets. A crash between the two leaves only unreferenced blobs,
--- which gc removes after the grace period.
local tide = require("tide")
local db = require("tide.db")
local native = require("tide._artifact")

local M = {}

M.STATUSES = { "Published", "Unfinished", "Unlisted", "Archived", "Disposed" }

-- status -> statuses it may move to with set_status.
local TRANSITIONS = {
  Published = { Unlisted = true, Archived = true, Disposed = true },
  Unfinished = { Published = true, Unlisted = true, Archived = true, Disposed = true },
  Unlisted = { Published = true, Archived = true, Disposed = true },
  Archived = { Published = true, Unlisted = true, Disposed = true },
  Disposed = {},
}

-- Statuses whose assets can be fetched, and statuses listed by versions() and used by latest.
local FETCHABLE = { Published = true, Unlisted = true, Unfinished = true }
local LISTED = { Published = true }

local MAX_UPSTREAMS = 10
local MAX_SEARCHED = 25
local DEFAULT_REPO = "main"
local DEFAULT_TREE_ASSET = "tree"
local DEFAULT_GRACE = 3600

local function raise(code, fmt, ...)
  error(tide.error(code, select("#", ...) > 0 and fmt:format(...) or fmt), 3)
end

local function check(v, msg, code)
  if v == nil and msg then
    error(tide.error(code or "EIO", msg), 3)
  end
  return v
end

local function now_us()
  return math.floor(tide.now() * 1e6)
end

-- ---- schema -----------------------------------------------------------------------------------

local migrated = {}

local function schema()
  local home = require("tide._runtime").home()
  if not home then
    raise("EINPUT", "the artifact store needs an open state store (run inside tide)")
  end
  if not migrated[home] then
    db.migrate("artifact", {
      [[
      CREATE TABLE artifact_repos (
        name TEXT PRIMARY KEY,
        upstreams TEXT NOT NULL DEFAULT '',
        created_us INTEGER NOT NULL);
      CREATE TABLE artifact_packages (
        id INTEGER PRIMARY KEY,
        repo TEXT NOT NULL REFERENCES artifact_repos (name),
        namespace TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL,
        created_us INTEGER NOT NULL,
        UNIQUE (repo, namespace, name));
      CREATE TABLE artifact_versions (
        id INTEGER PRIMARY KEY,
        package_id INTEGER NOT NULL REFERENCES artifact_packages (id),
        version TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN
          ('Published', 'Unfinished', 'Unlisted', 'Archived', 'Disposed')),
        origin TEXT NOT NULL DEFAULT '',
        created_us INTEGER NOT NULL,
        updated_us INTEGER NOT NULL,
        UNIQUE (package_id, version));
      CREATE TABLE artifact_assets (
        version_id INTEGER NOT NULL REFERENCES artifact_versions (id),
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('file', 'tree')),
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        files INTEGER NOT NULL,
        mode INTEGER NOT NULL DEFAULT 420,
        created_us INTEGER NOT NULL,
        PRIMARY KEY (version_id, name));
      CREATE INDEX artifact_assets_sha256 ON artifact_assets (sha256);
      ]],
      -- The XXH3-128 of a file asset, computed with its sha256 when it is stored: reads check it
      -- instead of a second SHA-256 pass. NULL for trees and for assets recorded before it.
      "ALTER TABLE artifact_assets ADD COLUMN xxh3 TEXT",
      -- When a blob last lost a reference (a version disposed or deleted): gc keeps it for the
      -- grace period from then, not from when the blob was written.
      [[
      CREATE TABLE IF NOT EXISTS artifact_released (
        sha256 TEXT NOT NULL,
        kind TEXT NOT NULL,
        released_us INTEGER NOT NULL,
        PRIMARY KEY (sha256, kind));
      ]],
    })
    migrated[home] = true
  end
  return home .. "/artifacts"
end

local inited = {}

--- The blob root ($TIDE_HOME/artifacts), created on first use.
local function root()
  local r = schema()
  if not inited[r] then
    check(native.init(r))
    inited[r] = true
  end
  return r
end

-- ---- names and versions -----------------------------------------------------------------------

local function check_name(what, s)
  if type(s) ~= "string" then
    raise("EINPUT", "%s must be a string", what)
  end
  if #s < 1 or #s > 255 or s:find("[#/%s@]") then
    raise("EINPUT", "invalid %s '%s': 1 to 255 characters, none of # / @ or spaces", what, s)
  end
  return s
end

local function check_version(v)
  if math.type(v) == "integer" then
    v = tostring(v)
  end
  check_name("version", v)
  if v == "latest" then
    raise("EINPUT", "'latest' is not a version that can be published")
  end
  return v
end

local function check_repo(r)
  r = r or DEFAULT_REPO
  if type(r) ~= "string" or #r < 2 or #r > 100 or not r:match("^[%w][%w._-]*$") then
    raise("EINPUT", "invalid repository name '%s': 2 to 100 of A-Z a-z 0-9 . _ -", tostring(r))
  end
  return r
end

-- Unicode letters (L) and decimal digits (Nd), the punctuation ~!@^&()-_+[]{};,. and spaces
-- (single, inner: checked apart).
local ASSET_CHARS = "^[\\p{L}\\p{Nd}~!@^&()\\-_+\\[\\]{};,. ]+$"

--- Asset names follow the generic format: Unicode letters and digits, the punctuation
--- ~!@^&()-_+[]{};,. and single inner spaces; at most 255 characters; not "." or "..".
function M.valid_asset_name(name)
  if type(name) ~= "string" or name == "" or name == "." or name == ".." then
    return false, "empty, '.' or '..'"
  end
  local n = utf8.len(name)
  if not n then
    return false, "not valid UTF-8"
  end
  if n > 255 then
    return false, "longer than 255 characters"
  end
  if name:find("^ ") or name:find(" $") or name:find("  ") then
    return false, "leading, trailing or double space"
  end
  if not require("tide.re").find(name, ASSET_CHARS, 1, "u") then
    for _, cp in utf8.codes(name) do
      local c = utf8.char(cp)
      if not require("tide.re").find(c, ASSET_CHARS, 1, "u") then
        return false, ("character U+%04X is not allowed (letters, digits, spaces and "
          .. "~!@^&()-_+[]{};,. only)"):format(cp)
      end
    end
  end
  return true
end

local function check_asset(name)
  local ok, why = M.valid_asset_name(name)
  if not ok then
    raise("EINPUT", "invalid asset name '%s': %s", tostring(name), why)
  end
  return name
end

-- Versions sort like semantic versions where they look like them, naturally otherwise:
-- "1.10" after "1.9", "1.0.0-rc.1" before "1.0.0". Ties are broken bytewise.
local function chunks(s)
  local out = {}
  for num, text in s:gmatch("(%d*)(%D*)") do
    if num ~= "" then
      out[#out + 1] = tonumber(num) or math.huge
    end
    if text ~= "" then
      out[#out + 1] = text
    end
  end
  return out
end

local function cmp_chunks(a, b)
  local ca, cb = chunks(a), chunks(b)
  for i = 1, math.max(#ca, #cb) do
    local x, y = ca[i], cb[i]
    if x == nil then
      return -1
    elseif y == nil then
      return 1
    elseif type(x) ~= type(y) then
      -- As semver ranks identifiers: numbers before text ("1.0.0-1" before "1.0.0-a").
      return type(x) == "number" and -1 or 1
    elseif x ~= y then
      return x < y and -1 or 1
    end
  end
  return 0
end

--- Compares two version strings: -1, 0 or 1.
function M.compare_versions(a, b)
  local ra, pa = a:match("^([^-+]*)%-?([^+]*)")
  local rb, pb = b:match("^([^-+]*)%-?([^+]*)")
  local c = cmp_chunks(ra, rb)
  if c == 0 then
    if pa == "" and pb ~= "" then
      c = 1
    elseif pa ~= "" and pb == "" then
      c = -1
    else
      c = cmp_chunks(pa, pb)
    end
  end
  if c == 0 and a ~= b then
    c = a < b and -1 or 1
  end
  return c
end

--- Parses "[namespace/]package[@version]" (or a table with those fields and repo).
function M.parse_ref(ref, opts)
  opts = opts or {}
  local r = {}
  if type(ref) == "table" then
    r.repo, r.namespace, r.package, r.version = ref.repo, ref.namespace, ref.package, ref.version
  elseif type(ref) == "string" then
    local body, version = ref:match("^([^@]*)@(.*)$")
    body = body or ref
    r.version = version
    local ns, pkg = body:match("^([^/]*)/(.*)$")
    if ns then
      r.namespace, r.package = ns, pkg
    else
      r.package = body
    end
  else
    raise("EINPUT", "artifact reference expected, got %s", type(ref))
  end
  r.repo = check_repo(r.repo or opts.repo)
  r.namespace = r.namespace or opts.namespace or ""
  if r.namespace ~= "" then
    check_name("namespace", r.namespace)
  end
  check_name("package", r.package)
  if r.version ~= nil then
    if math.type(r.version) == "integer" then
      r.version = tostring(r.version)
    end
    check_name("version", r.version)
  end
  return r
end

local function ref_string(r)
  local ns = (r.namespace and r.namespace ~= "") and (r.namespace .. "/") or ""
  return ns .. r.package .. (r.version and ("@" .. r.version) or "")
end
M.ref_string = ref_string

-- ---- index rows -------------------------------------------------------------------------------

local function repo_row(name)
  return db.row("SELECT * FROM artifact_repos WHERE name = ?", name)
end

local function ensure_repo(name)
  db.exec("INSERT INTO artifact_repos (name, created_us) VALUES (?, ?) "
    .. "ON CONFLICT (name) DO NOTHING", name, now_us())
end

local function package_row(r)
  return db.row("SELECT * FROM artifact_packages WHERE repo = ? AND namespace = ? AND name = ?",
    r.repo, r.namespace, r.package)
end

local function ensure_package(r)
  ensure_repo(r.repo)
  db.exec("INSERT INTO artifact_packages (repo, namespace, name, created_us) VALUES (?, ?, ?, ?) "
    .. "ON CONFLICT (repo, namespace, name) DO NOTHING", r.repo, r.namespace, r.package, now_us())
  return package_row(r)
end

-- (SELECT * so that a read-only store whose tables predate the xxh3 column can be read.)
local function assets_of(vid)
  local out = {}
  for _, a in ipairs(db.rows("SELECT * FROM artifact_assets WHERE version_id = ? ORDER BY name",
    vid)) do
    out[#out + 1] = { name = a.name, kind = a.kind, sha256 = a.sha256, xxh3 = a.xxh3,
      size = a.size, files = a.files, mode = a.mode }
  end
  return out
end

-- The public shape of a version: repo, namespace, package, version, status, sha256, size, files,
-- assets. sha256/size/files describe the single asset when there is one, else the sums.
local function describe(pkg, v)
  local assets = assets_of(v.id)
  local out = {
    repo = pkg.repo,
    namespace = pkg.namespace,
    package = pkg.name,
    version = v.version,
    status = v.status,
    origin = v.origin ~= "" and v.origin or nil,
    created = v.created_us / 1e6,
    updated = v.updated_us / 1e6,
    assets = assets,
    size = 0,
    files = 0,
  }
  for _, a in ipairs(assets) do
    out.size = out.size + a.size
    out.files = out.files + a.files
  end
  if #assets == 1 then
    out.sha256 = assets[1].sha256
    out.kind = assets[1].kind
    out.asset = assets[1].name
  end
  return out
end

local function sorted_versions(pkg, statuses)
  local rows = db.rows("SELECT * FROM artifact_versions WHERE package_id = ?", pkg.id)
  local out = {}
  for _, v in ipairs(rows) do
    if not statuses or statuses[v.status] then
      out[#out + 1] = v
    end
  end
  table.sort(out, function(a, b)
    return M.compare_versions(a.version, b.version) < 0
  end)
  return out
end

-- The version row of r in its own repository (latest resolved), or nil.
local function local_version(r)
  local pkg = package_row(r)
  if not pkg then
    return nil
  end
  if r.version == nil or r.version == "latest" then
    local list = sorted_versions(pkg, LISTED)
    return pkg, list[#list]
  end
  return pkg, db.row("SELECT * FROM artifact_versions WHERE package_id = ? AND version = ?",
    pkg.id, r.version)
end

-- ---- upstreams --------------------------------------------------------------------------------

-- An upstream is another repository of this store ("name") or a repository of another tide store
-- on disk ("/path/to/home" or "/path/to/home#repo"; the repo defaults to main).
local function parse_upstream(u)
  if type(u) ~= "string" or u == "" or u:find("%c") then
    raise("EINPUT", "an upstream is a repository name or /path/to/home[#repo], not %q",
      tostring(u))
  end
  if u:sub(1, 1) == "/" then
    local home, repo = u:match("^([^#]+)#([^#]*)$")
    if u:find("#", 1, true) and not (home and repo ~= "") then
      raise("EINPUT", "invalid upstream '%s': write /path/to/home#repo (one '#', then a "
        .. "repository name)", u)
    end
    return { home = home or u, repo = check_repo(repo or DEFAULT_REPO) }
  end
  if u:find("#", 1, true) then
    raise("EINPUT", "invalid upstream '%s': a store path starts with '/'", u)
  end
  return { repo = check_repo(u) }
end

local function upstreams_of(repo)
  local row = repo_row(repo)
  local out = {}
  if row and row.upstreams ~= "" then
    for u in row.upstreams:gmatch("[^\n]+") do
      out[#out + 1] = u
    end
  end
  return out
end

--- Creates a repository (or updates its upstreams): opts.upstreams is an ordered list.
function M.repo(name, opts)
  opts = opts or {}
  name = check_repo(name)
  local ups = opts.upstreams or {}
  if #ups > MAX_UPSTREAMS then
    raise("EINPUT", "a repository has at most %d upstreams, not %d", MAX_UPSTREAMS, #ups)
  end
  for _, u in ipairs(ups) do
    if type(u) ~= "string" or u:find("\n") then
      raise("EINPUT", "upstream must be a repository name or a store path")
    end
    local p = parse_upstream(u)
    if not p.home and p.repo == name then
      raise("EINPUT", "repository '%s' cannot be its own upstream", name)
    end
  end
  schema()
  db.tx(function()
    ensure_repo(name)
    if opts.upstreams then
      db.exec("UPDATE artifact_repos SET upstreams = ? WHERE name = ?",
        table.concat(ups, "\n"), name)
    end
  end)
  return { name = name, upstreams = upstreams_of(name) }
end

--- Every repository with its upstreams.
function M.repos()
  schema()
  local out = {}
  for _, row in ipairs(db.rows("SELECT name FROM artifact_repos ORDER BY name")) do
    out[#out + 1] = { name = row.name, upstreams = upstreams_of(row.name) }
  end
  return out
end

local function tide_exe()
  return require("tide.uv").exepath()
end

local function home_key(home)
  return require("tide.uv").fs_realpath(home) or home
end

local LOOKUP_TIMEOUT = 60

-- Asks another tide store for q in repository up.repo and, failing that, in that repository's
-- upstreams, through a tide of its own that opens the store read-only (it never creates or
-- migrates anything there): the index of a store is its own tide's business. Returns its answer
-- {found, searched, seen, version, root, origin}; a store that cannot answer (missing, damaged,
-- too slow) raises an error naming it.
local function remote_lookup(up, q, state)
  local json = require("tide.json")
  local seen = {}
  for k in pairs(state.seen) do
    seen[#seen + 1] = k
  end
  table.sort(seen)
  local res = require("tide.proc").run({ tide_exe(), "--home", up.home, "artifact", "lookup",
    ref_string(q), "--repo", up.repo, "--budget", tostring(state.limit - state.searched),
    "--seen", json.encode(seen), timeout = LOOKUP_TIMEOUT })
  local where = ("upstream store '%s' (repository %s)"):format(up.home, up.repo)
  if res.timed_out then
    raise("ETIMEDOUT", "%s did not answer within %d s", where, LOOKUP_TIMEOUT)
  end
  local ok, ans = pcall(json.decode, res.stdout or "")
  if not ok or type(ans) ~= "table" then
    raise("EIO", "%s: no answer (exit %s): %s", where, tostring(res.code),
      ((res.stderr or ""):match("[^\n]+") or "nothing on stderr"))
  end
  if type(ans.error) == "table" then
    -- Its bad input (no store there, a damaged one) is no bad usage here: a failed operation.
    local code = type(ans.error.code) == "string" and ans.error.code:match("^E[A-Z]+$") or "EIO"
    if code == "EINPUT" or code == "EUSAGE" then
      code = "EIO"
    end
    raise(code, "%s: %s", where, tostring(ans.error.message))
  end
  if math.type(ans.searched) ~= "integer" or ans.searched < 1 then
    raise("EIO", "%s: a malformed answer", where)
  end
  return ans
end

-- A version found in another store is outside input: its names, digests and sizes are checked
-- before anything is copied or recorded.
local function check_remote_version(v, q, where)
  local function bad(what)
    raise("EINPUT", "%s: a malformed answer (%s)", where, what)
  end
  if type(v) ~= "table" or type(v.version) ~= "string" or not FETCHABLE[v.status]
      or type(v.assets) ~= "table" or #v.assets == 0 then
    bad("version")
  end
  check_version(v.version)
  if q.version and q.version ~= "latest" and v.version ~= q.version then
    bad("another version")
  end
  for _, a in ipairs(v.assets) do
    if type(a) ~= "table" or not M.valid_asset_name(a.name) then
      bad("asset name")
    end
    if (a.kind ~= "file" and a.kind ~= "tree") or type(a.sha256) ~= "string"
        or not a.sha256:match("^" .. ("[0-9a-f]"):rep(64) .. "$") then
      bad("asset " .. a.name)
    end
    for _, k in ipairs({ "size", "files", "mode" }) do
      if math.type(a[k]) ~= "integer" or a[k] < 0 or (k == "mode" and a[k] > 4095) then
        bad("asset " .. a.name .. " " .. k)
      end
    end
  end
end

-- Searches the upstreams of repo, in order and depth first: a repository of this store is looked
-- at, then its own upstreams; another store answers for its repository and that one's upstreams.
-- state: {seen = {key = true}, searched = n, limit = n, home = this store's real home, prefix =
-- origin prefix for this store's repositories}. Returns {version, root, origin, remote} or nil.
local function search_upstreams(repo, q, state)
  for _, u in ipairs(upstreams_of(repo)) do
    if state.searched >= state.limit then
      return nil
    end
    local up = parse_upstream(u)
    local key = (up.home and home_key(up.home) or state.home) .. "#" .. up.repo
    if not state.seen[key] then
      state.seen[key] = true
      local uq = { repo = up.repo, namespace = q.namespace, package = q.package,
        version = q.version }
      if up.home then
        local ans = remote_lookup(up, uq, state)
        state.searched = state.searched + ans.searched
        for _, k in ipairs(type(ans.seen) == "table" and ans.seen or {}) do
          state.seen[tostring(k)] = true
        end
        if ans.found then
          local where = ("upstream store '%s' (repository %s)"):format(up.home, up.repo)
          check_remote_version(ans.version, uq, where)
          if type(ans.root) ~= "string" or ans.root:sub(1, 1) ~= "/"
              or type(ans.origin) ~= "string" then
            raise("EINPUT", "%s: a malformed answer (origin)", where)
          end
          return { version = ans.version, root = ans.root, origin = ans.origin, remote = true }
        end
      else
        state.searched = state.searched + 1
        local upkg, uv = local_version(uq)
        if uv and FETCHABLE[uv.status] then
          return { version = describe(upkg, uv), root = state.home .. "/artifacts",
            origin = state.prefix .. up.repo }
        end
        local found = search_upstreams(up.repo, q, state)
        if found then
          return found
        end
      end
    end
  end
  return nil
end

-- The XXH3-128 this store already knows for a file blob, or nil.
local function known_xxh3(sha256)
  local row = db.row("SELECT xxh3 FROM artifact_assets WHERE sha256 = ? AND kind = 'file' "
    .. "AND xxh3 IS NOT NULL LIMIT 1", sha256)
  return row and row.xxh3
end

-- Copies the blobs of v's assets from another store's root, verifying each on the way. The read
-- checks (xxh3) of file assets are computed here, never taken from the other store.
local function import_blobs(src_root, dst_root, assets)
  for _, a in ipairs(assets) do
    a.xxh3 = nil
    if not native.exists(dst_root, a.sha256) then
      local path = ("%s/blobs/%s/%s"):format(src_root, a.sha256:sub(1, 2), a.sha256)
      local info = check(native.put_file(dst_root, path, a.sha256))
      if a.kind == "file" then
        a.xxh3 = info.xxh3
      end
    elseif a.kind == "file" then
      a.xxh3 = known_xxh3(a.sha256)
    end
    if a.kind == "tree" then
      for _, e in ipairs(check(native.tree(dst_root, a.sha256))) do
        if e.type == "file" and not native.exists(dst_root, e.sha256) then
          local path = ("%s/blobs/%s/%s"):format(src_root, e.sha256:sub(1, 2), e.sha256)
          check(native.put_file(dst_root, path, e.sha256))
        end
      end
    end
  end
end

-- Records v (a found version with its assets) in repository r.repo, where it is retained even if
-- the upstream copy goes away.
local function retain(r, v, origin)
  return db.tx(function()
    local pkg = ensure_package(r)
    local row = db.row("SELECT * FROM artifact_versions WHERE package_id = ? AND version = ?",
      pkg.id, v.version)
    if not row then
      local t = now_us()
      local _, vid = db.exec("INSERT INTO artifact_versions (package_id, version, status, origin, "
        .. "created_us, updated_us) VALUES (?, ?, ?, ?, ?, ?)", pkg.id, v.version, v.status,
        origin, t, t)
      for _, a in ipairs(v.assets) do
        db.exec("INSERT INTO artifact_assets (version_id, name, kind, sha256, xxh3, size, files, "
          .. "mode, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", vid, a.name, a.kind, a.sha256,
          a.xxh3, a.size, a.files, a.mode or 420, t)
      end
      row = db.row("SELECT * FROM artifact_versions WHERE id = ?", vid)
    end
    return pkg, row
  end)
end

-- Finds r in its repository, then in the upstreams depth first (at most 25 repositories), and
-- retains what an upstream had in r.repo. Returns pkg, version row or nil.
local function resolve(r, opts)
  schema()
  local pkg, v = local_version(r)
  if v or (opts and opts.upstream == false) then
    return pkg, v
  end
  local home = home_key(require("tide._runtime").home())
  local state = { seen = { [home .. "#" .. r.repo] = true }, searched = 1, limit = MAX_SEARCHED,
    home = home, prefix = "repo:" }
  local found = search_upstreams(r.repo, r, state)
  if not found then
    return pkg, nil
  end
  if found.remote then
    -- Blobs imported from another store are unreferenced until retain commits: hold the lock.
    local _ <close> = check(native.lock(root(), false))
    import_blobs(found.root, root(), found.version.assets)
    return retain(r, found.version, found.origin)
  end
  return retain(r, found.version, found.origin)
end

--- What `tide artifact lookup` answers for a downstream store, on a store opened read-only:
--- ref in opts.repo, else in its upstreams (opts.budget repositories at most, skipping the
--- opts.seen keys "realhome#repo"). Never writes to the store.
function M.lookup(ref, opts)
  local r = M.parse_ref(ref, opts)
  local home = home_key(require("tide._runtime").home())
  local budget = opts.budget or MAX_SEARCHED
  local state = { seen = {}, searched = 1, limit = budget, home = home,
    prefix = "store:" .. home .. "#" }
  for _, k in ipairs(type(opts.seen) == "table" and opts.seen or {}) do
    state.seen[tostring(k)] = true
  end
  state.seen[home .. "#" .. r.repo] = true
  local function answer(found)
    local seen = {}
    for k in pairs(state.seen) do
      seen[#seen + 1] = k
    end
    table.sort(seen)
    local out = { found = found ~= nil, searched = state.searched, seen = seen }
    if found then
      for _, a in ipairs(found.version.assets) do
        a.xxh3 = nil -- computed by whoever imports, never taken on trust
      end
      out.version, out.root, out.origin = found.version, found.root, found.origin
    end
    return out
  end
  local meta = db.row("SELECT value FROM meta WHERE key = 'schema.artifact'")
  if not meta or budget < 1 then
    return answer(nil) -- no artifact was ever stored here
  end
  local pkg, v = local_version(r)
  if v and FETCHABLE[v.status] then
    return answer({ version = describe(pkg, v), root = home .. "/artifacts",
      origin = state.prefix .. r.repo })
  end
  return answer(search_upstreams(r.repo, r, state))
end

local function must_resolve(r, opts)
  local pkg, v = resolve(r, opts)
  if not v then
    raise("ENOENT", "no artifact %s in repository '%s'", ref_string(r), r.repo)
  end
  return pkg, v
end

-- ---- publishing -------------------------------------------------------------------------------

local function publish_opts(opts)
  if type(opts) ~= "table" then
    raise("EINPUT", "options table expected")
  end
  local r = M.parse_ref({ package = opts.package, namespace = opts.namespace, repo = opts.repo,
    version = opts.version ~= nil and check_version(opts.version) or nil })
  if not r.version then
    raise("EINPUT", "a version is needed to publish")
  end
  return r
end

-- Records one asset of r's version in one transaction; the blob is already stored.
local function record(r, asset, opts)
  local status = opts.unfinished and "Unfinished" or (opts.status or "Published")
  if status ~= "Published" and status ~= "Unfinished" and status ~= "Unlisted" then
    raise("EINPUT", "a version is published as Published, Unfinished or Unlisted, not '%s'",
      tostring(status))
  end
  return db.tx(function()
    local pkg = ensure_package(r)
    local t = now_us()
    local v = db.row("SELECT * FROM artifact_versions WHERE package_id = ? AND version = ?",
      pkg.id, r.version)
    if not v then
      local _, vid = db.exec("INSERT INTO artifact_versions (package_id, version, status, "
        .. "created_us, updated_us) VALUES (?, ?, ?, ?, ?)", pkg.id, r.version, status, t, t)
      v = { id = vid, status = status }
    else
      if v.status == "Archived" or v.status == "Disposed" then
        raise("ECONFLICT", "%s is %s: it cannot be published again", ref_string(r), v.status)
      end
      if status == "Unfinished" and v.status ~= "Unfinished" then
        raise("ECONFLICT", "%s is %s: it cannot return to Unfinished", ref_string(r), v.status)
      end
      local next_status = v.status
      if v.status == "Unfinished" then
        next_status = status
      end
      db.exec("UPDATE artifact_versions SET status = ?, updated_us = ? WHERE id = ?",
        next_status, t, v.id)
    end
    local have = db.row("SELECT * FROM artifact_assets WHERE version_id = ? AND name = ?", v.id,
      asset.name)
    if have then
      if have.sha256 ~= asset.sha256 then
        raise("ECONFLICT", "%s already has an asset '%s' with other content (sha256 %s)",
          ref_string(r), asset.name, have.sha256)
      end
      if not have.xxh3 and asset.xxh3 then -- recorded before read checks: gains one now
        db.exec("UPDATE artifact_assets SET xxh3 = ? WHERE version_id = ? AND name = ?",
          asset.xxh3, v.id, asset.name)
      end
    else
      db.exec("INSERT INTO artifact_assets (version_id, name, kind, sha256, xxh3, size, files, "
        .. "mode, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", v.id, asset.name, asset.kind,
        asset.sha256, asset.xxh3, asset.size, asset.files, asset.mode or 420, t)
    end
    local row = db.row("SELECT * FROM artifact_versions WHERE id = ?", v.id)
    local out = describe(pkg, row)
    out.sha256, out.kind, out.asset = asset.sha256, asset.kind, asset.name
    out.size, out.files = asset.size, asset.files
    return out
  end)
end

local function check_sha256(h)
  if h ~= nil and (type(h) ~= "string" or not h:match("^%x+$") or #h ~= 64) then
    raise("EINPUT", "sha256 must be 64 hexadecimal digits")
  end
end

local function basename(p)
  return (p:gsub("/+$", ""):match("([^/]+)$")) or p
end

--- Stores one file as an asset of a version: opts = {package, version, namespace, repo, name
--- (default the file's name), sha256 (checked), unfinished, status}.
function M.put_file(path, opts)
  local r = publish_opts(opts)
  local name = check_asset(opts.name or basename(path))
  check_sha256(opts.sha256)
  local rt = root()
  -- Shared store lock from the first blob to the commit: gc cannot sweep in between.
  local _ <close> = check(native.lock(rt, false))
  local info = check(native.put_file(rt, path, opts.sha256 and opts.sha256:lower()))
  local st = require("tide.uv").fs_stat(path)
  local mode = st and (st.mode & 4095) or 420
  local out = record(r, { name = name, kind = "file", sha256 = info.sha256, xxh3 = info.xxh3,
    size = info.size, files = 1, mode = mode }, opts)
  out.stored = info.stored
  return out
end

--- Stores a directory tree (files, modes, symbolic links, empty directories) as one asset:
--- opts as put_file, name defaults to "tree", sha256 is the manifest's.
function M.put_dir(dir, opts)
  local r = publish_opts(opts)
  local name = check_asset(opts.name or DEFAULT_TREE_ASSET)
  check_sha256(opts.sha256)
  local rt = root()
  local uv = require("tide.uv")
  local real_dir, real_home = uv.fs_realpath(dir), uv.fs_realpath(rt .. "/..")
  if real_dir and real_home and (real_home == real_dir
      or real_home:sub(1, #real_dir + 1) == real_dir .. "/" or real_dir == "/") then
    raise("EINPUT", "'%s' holds the tide store (%s): push a directory outside it", dir, real_home)
  end
  local _ <close> = check(native.lock(rt, false))
  local info = check(native.put_tree(rt, dir, opts.threads))
  if opts.sha256 and opts.sha256:lower() ~= info.sha256 then
    raise("EINTEGRITY", "the tree's manifest sha256 is %s, not %s", info.sha256, opts.sha256)
  end
  local out = record(r, { name = name, kind = "tree", sha256 = info.sha256, size = info.size,
    files = info.files, mode = 493 }, opts)
  out.stored = info.stored
  return out
end

--- Stores a file or a directory.
function M.put(path, opts)
  local st = require("tide.uv").fs_stat(path)
  if not st then
    raise("ENOENT", "'%s' does not exist", tostring(path))
  end
  if st.type == "directory" then
    return M.put_dir(path, opts)
  end
  return M.put_file(path, opts)
end

-- ---- reading ----------------------------------------------------------------------------------

-- r with the version found (a reference may say latest or nothing).
local function found_ref(r, v)
  return ref_string({ namespace = r.namespace, package = r.package, version = v.version })
end

local function fetchable(r, v)
  if not FETCHABLE[v.status] then
    raise("ECONFLICT", "%s is %s: its assets cannot be downloaded", found_ref(r, v), v.status)
  end
end

--- Restores a version into dest: a single tree asset becomes dest itself; otherwise dest is a
--- directory holding each asset by name. opts.asset picks one asset, written at dest.
--- Returns the version table.
function M.get(ref, dest, opts)
  opts = opts or {}
  if type(dest) ~= "string" or dest == "" then
    raise("EINPUT", "a destination path is needed")
  end
  local r = M.parse_ref(ref, opts)
  local pkg, v = must_resolve(r, opts)
  fetchable(r, v)
  local out = describe(pkg, v)
  local rt = root()
  local assets = out.assets
  if opts.asset then
    local pick
    for _, a in ipairs(assets) do
      if a.name == opts.asset then
        pick = a
      end
    end
    if not pick then
      raise("ENOENT", "%s has no asset '%s'", found_ref(r, v), opts.asset)
    end
    assets = { pick }
  end
  -- Missing parents are created, and removed again (when still empty) if the pull fails.
  local uv = require("tide.uv")
  local made = {}
  local parent = dest:match("^(.*[^/])/+[^/]+/*$")
  while parent and not uv.fs_lstat(parent) do
    table.insert(made, 1, parent)
    parent = parent:match("^(.*[^/])/+[^/]+/*$")
  end
  if made[1] then
    check(require("tide.fs").mkdir_p(made[#made]))
  end
  local ok, msg, code
  if #assets == 1 and (opts.asset or assets[1].kind == "tree") then
    local a = assets[1]
    if a.kind == "tree" then
      ok, msg, code = native.get_tree(rt, a.sha256, dest, opts.threads)
    else
      ok, msg, code = native.get_file(rt, a.sha256, dest, a.mode, a.xxh3)
    end
  else
    -- Several assets (or one file asset) make a directory, built whole before it appears.
    ok, msg, code = native.get_assets(rt, assets, dest, opts.threads)
  end
  if not ok then
    for i = #made, 1, -1 do
      uv.fs_rmdir(made[i])
    end
    error(tide.error(code or "EIO", msg), 2)
  end
  return out
end

--- A verified stream of a file asset: reader:read([n]) -> string or nil at the end (raises
--- EINTEGRITY there when the blob is corrupt), reader:size(), reader:close().
function M.open(ref, opts)
  opts = opts or {}
  local r = M.parse_ref(ref, opts)
  local pkg, v = must_resolve(r, opts)
  fetchable(r, v)
  local out = describe(pkg, v)
  local a
  for _, x in ipairs(out.assets) do
    if (opts.asset and x.name == opts.asset) or (not opts.asset and x.kind == "file") then
      a = a or x
    end
  end
  if not a or a.kind ~= "file" then
    raise("ENOENT", "%s has no file asset%s", found_ref(r, v),
      opts.asset and (" '" .. opts.asset .. "'") or "")
  end
  local reader = check(native.open(root(), a.sha256))
  local stream = { asset = a.name, sha256 = a.sha256 }
  function stream.read(_, n)
    local chunk, msg, code = reader:read(n)
    if chunk == nil and msg then
      error(tide.error(code, msg), 2)
    end
    return chunk
  end
  function stream.size()
    return reader:size()
  end
  function stream.close()
    reader:close()
  end
  return setmetatable(stream, { __close = stream.close })
end

--- The version table of ref (latest when no version is given): repo, namespace, package, version,
--- status, sha256, size, files, assets, created.
function M.info(ref, opts)
  opts = opts or {}
  local r = M.parse_ref(ref, opts)
  schema()
  local pkg, v = must_resolve(r, opts)
  return describe(pkg, v)
end

--- The versions of a package, oldest first in version order. opts.all includes every status;
--- by default only Published ones are listed (Unlisted, Archived and the others are not).
function M.versions(ref, opts)
  opts = opts or {}
  local r = M.parse_ref(ref, opts)
  schema()
  local pkg = package_row(r)
  if not pkg then
    return {}
  end
  local out = {}
  for _, v in ipairs(sorted_versions(pkg, not opts.all and LISTED or nil)) do
    out[#out + 1] = describe(pkg, v)
  end
  return out
end

--- Packages of a repository (opts.repo, default main), with their latest version. With a
--- package name, its versions (as versions()).
function M.list(package, opts)
  if type(package) == "table" and opts == nil then
    package, opts = nil, package
  end
  opts = opts or {}
  if package then
    return M.versions(package, opts)
  end
  local repo = check_repo(opts.repo)
  schema()
  local out = {}
  local rows = db.rows("SELECT * FROM artifact_packages WHERE repo = ? ORDER BY namespace, name",
    repo)
  for _, pkg in ipairs(rows) do
    local listed = sorted_versions(pkg, LISTED)
    local all = sorted_versions(pkg, nil)
    out[#out + 1] = { repo = repo, namespace = pkg.namespace, package = pkg.name,
      versions = #all, latest = listed[#listed] and listed[#listed].version or nil }
  end
  return out
end

-- ---- status, retention, deletion --------------------------------------------------------------

-- Notes that the assets of version vid lose a reference now (inside the caller's transaction).
local function release(vid)
  db.exec("INSERT INTO artifact_released (sha256, kind, released_us) "
    .. "SELECT sha256, kind, ? FROM artifact_assets WHERE version_id = ? AND true "
    .. "ON CONFLICT (sha256, kind) DO UPDATE SET released_us = excluded.released_us",
    now_us(), vid)
end

--- Moves a version to another status along the model's transitions; Disposed drops its assets.
function M.set_status(ref, status, opts)
  opts = opts or {}
  local r = M.parse_ref(ref, opts)
  if not r.version or r.version == "latest" then
    raise("EINPUT", "changing the status of %s needs an exact version (%s@VERSION)",
      ref_string(r), ref_string({ namespace = r.namespace, package = r.package }))
  end
  if not TRANSITIONS[status] then
    raise("EINPUT", "unknown status '%s' (one of %s)", tostring(status),
      table.concat(M.STATUSES, ", "))
  end
  schema()
  return db.tx(function()
    local pkg, v = local_version(r)
    if not v then
      raise("ENOENT", "no artifact %s in repository '%s'", ref_string(r), r.repo)
    end
    if v.status ~= status then
      if not TRANSITIONS[v.status][status] then
        raise("ECONFLICT", "%s is %s: it cannot become %s", ref_string(r), v.status, status)
      end
      db.exec("UPDATE artifact_versions SET status = ?, updated_us = ? WHERE id = ?", status,
        now_us(), v.id)
      if status == "Disposed" then
        release(v.id)
        db.exec("DELETE FROM artifact_assets WHERE version_id = ?", v.id)
      end
    end
    return describe(pkg, db.row("SELECT * FROM artifact_versions WHERE id = ?", v.id))
  end)
end

--- Removes a version and its assets, so that it can be published again.
function M.delete(ref, opts)
  opts = opts or {}
  local r = M.parse_ref(ref, opts)
  if not r.version or r.version == "latest" then
    raise("EINPUT", "deleting needs an exact version (%s@VERSION)",
      ref_string({ namespace = r.namespace, package = r.package }))
  end
  schema()
  db.tx(function()
    local _, v = local_version(r)
    if not v then
      raise("ENOENT", "no artifact %s in repository '%s'", ref_string(r), r.repo)
    end
    if v.status ~= "Disposed" then
      release(v.id)
    end
    db.exec("DELETE FROM artifact_assets WHERE version_id = ?", v.id)
    db.exec("DELETE FROM artifact_versions WHERE id = ?", v.id)
  end)
  return true
end

--- Applies a retention rule to a package: a version is kept when it is among the `keep` newest
--- (in version order) or younger than `days`; the others are Disposed. Disposed and Unfinished
--- versions are left alone. Returns the list of versions disposed (or that would be, dry_run).
function M.retain(ref, rule)
  rule = rule or {}
  if rule.keep == nil and rule.days == nil then
    raise("EINPUT", "a retention rule needs keep or days")
  end
  if rule.keep ~= nil and (math.type(rule.keep) ~= "integer" or rule.keep < 0) then
    raise("EINPUT", "keep must be a whole number >= 0")
  end
  if rule.days ~= nil and (type(rule.days) ~= "number" or rule.days < 0) then
    raise("EINPUT", "days must be a number >= 0")
  end
  local r = M.parse_ref(ref, rule)
  schema()
  local pkg = package_row(r)
  if not pkg then
    return {}
  end
  local candidates = sorted_versions(pkg, { Published = true, Unlisted = true, Archived = true })
  local cutoff = rule.days and (now_us() - math.floor(rule.days * 86400e6)) or nil
  local gone = {}
  for i, v in ipairs(candidates) do
    local newest = rule.keep and (#candidates - i) < rule.keep
    local young = cutoff and v.created_us >= cutoff
    if not newest and not young then
      gone[#gone + 1] = v.version
    end
  end
  if not rule.dry_run then
    for _, version in ipairs(gone) do
      M.set_status({ repo = r.repo, namespace = r.namespace, package = r.package,
        version = version }, "Disposed")
    end
  end
  return gone
end

-- ---- integrity and space ----------------------------------------------------------------------

--- Re-hashes the blobs of one version (ref) or of every version (ref nil). Returns ok, report:
--- {checked = versions, files = blobs checked, bad = {{ref, asset, message}}}.
function M.verify(ref, opts)
  opts = opts or {}
  local rt = root()
  local targets = {}
  if ref then
    local r = M.parse_ref(ref, opts)
    local pkg, v = must_resolve(r, opts)
    targets[1] = { pkg = pkg, v = v }
  else
    for _, row in ipairs(db.rows("SELECT v.*, p.repo, p.namespace, p.name AS pname, p.id AS pid "
      .. "FROM artifact_versions v JOIN artifact_packages p ON p.id = v.package_id "
      .. "WHERE v.status <> 'Disposed' ORDER BY p.repo, p.namespace, p.name, v.version")) do
      targets[#targets + 1] = { pkg = { id = row.pid, repo = row.repo, namespace = row.namespace,
        name = row.pname }, v = row }
    end
  end
  local report = { checked = 0, files = 0, bad = {} }
  for _, t in ipairs(targets) do
    report.checked = report.checked + 1
    for _, a in ipairs(assets_of(t.v.id)) do
      local n, msg
      if a.kind == "tree" then
        n, msg = native.verify_tree(rt, a.sha256)
      else
        n, msg = native.verify(rt, a.sha256)
        n = n and 1
      end
      if n then
        report.files = report.files + n
      else
        report.bad[#report.bad + 1] = {
          ref = ref_string({ namespace = t.pkg.namespace, package = t.pkg.name,
            version = t.v.version }),
          repo = t.pkg.repo, asset = a.name, message = msg }
      end
    end
  end
  return #report.bad == 0, report
end

--- Removes blobs no version references, once they are older than opts.grace seconds (default
--- 3600) and lost their last reference at least as long ago, leftover temporary files as old, and
--- unused stat caches. opts.dry_run only counts. A tree whose manifest cannot be read is reported
--- in stats.problems ({ref, repo, asset, message}); what the damaged manifest still names is kept.
function M.gc(opts)
  opts = opts or {}
  local grace = opts.grace or DEFAULT_GRACE
  if math.type(grace) ~= "integer" or grace < 0 then
    raise("EINPUT", "grace must be a whole number of seconds >= 0")
  end
  local rt = root()
  -- Exclusive: no put is between its blobs and its commit while the index is read and swept.
  local _ <close> = check(native.lock(rt, true))
  local blobs, trees = {}, {}
  local function add(sha, kind)
    if kind == "tree" then
      trees[#trees + 1] = sha
    else
      blobs[#blobs + 1] = sha
    end
  end
  for _, a in ipairs(db.rows("SELECT DISTINCT a.sha256, a.kind FROM artifact_assets a "
    .. "JOIN artifact_versions v ON v.id = a.version_id WHERE v.status <> 'Disposed'")) do
    add(a.sha256, a.kind)
  end
  local cutoff = now_us() - grace * 1000000
  for _, a in ipairs(db.rows("SELECT sha256, kind FROM artifact_released WHERE released_us > ?",
    cutoff)) do
    add(a.sha256, a.kind)
  end
  local st = check(native.gc(rt, blobs, trees, grace, opts.dry_run and true or false))
  local problems = {}
  for _, p in ipairs(st.problems) do
    local rows = db.rows("SELECT a.name, v.version, k.repo, k.namespace, k.name AS package "
      .. "FROM artifact_assets a JOIN artifact_versions v ON v.id = a.version_id "
      .. "JOIN artifact_packages k ON k.id = v.package_id WHERE a.sha256 = ? AND a.kind = 'tree' "
      .. "ORDER BY k.repo, k.namespace, k.name, v.version", p.sha256)
    for _, row in ipairs(rows) do
      problems[#problems + 1] = { ref = ref_string({ namespace = row.namespace,
        package = row.package, version = row.version }), repo = row.repo, asset = row.name,
        sha256 = p.sha256, message = p.message }
    end
    if #rows == 0 then -- released only: nothing to name but the blob
      problems[#problems + 1] = { sha256 = p.sha256, message = p.message }
    end
  end
  st.problems = problems
  if not opts.dry_run then
    db.exec("DELETE FROM artifact_released WHERE released_us <= ?", cutoff)
  end
  return st
end

--- The entries of a tree asset: {type, path, mode, size, sha256, target}.
function M.tree(ref, opts)
  opts = opts or {}
  local r = M.parse_ref(ref, opts)
  local pkg, v = must_resolve(r, opts)
  local out = describe(pkg, v)
  for _, a in ipairs(out.assets) do
    if a.kind == "tree" and (not opts.asset or opts.asset == a.name) then
      return check(native.tree(root(), a.sha256))
    end
  end
  raise("ENOENT", "%s has no tree asset", found_ref(r, v))
end

return M
