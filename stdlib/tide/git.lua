--- tide.git: git repositories through libgit2, from a task.
---
---   local repo = git.clone("https://example.com/web.git", "ws/web", {
---     branch = "main", credentials = { token = secret }, progress = function(p) ... end })
---   local info = repo:commit_info("HEAD")        -- id, summary, author...
---   local paths = repo:changed_paths(old, info.id)
---   local heads = git.ls_remote(url)             -- {["refs/heads/main"] = id, ...}
---
--- Every call that touches the disk or the network runs on the thread pool and blocks only the
--- calling task. Failures raise TideErrors: EGIT (not a repository, a revision that does not
--- resolve, a refused connection, authentication), ENOENT (a path that does not exist), EINPUT
--- (bad options), ECANCELED. URLs in messages never carry a password; credentials never appear.
--- The native side is tide._git (lua/lgit.c).
local tide = require("tide")
local fs = require("tide.fs")
local native = require("tide._git")

local M = {}

local Repo = {}
Repo.__index = Repo
Repo.__name = "tide.git.Repo"

local function input_error(where, fmt, ...)
  error(tide.error("EINPUT", where .. ": " .. string.format(fmt, ...)), 0)
end

--- Raises the fail triple of a native as a TideError; passes results through otherwise.
local function check(ok, msg, code)
  if ok == nil and msg ~= nil then
    error(tide.error(code or "EGIT", msg), 0)
  end
  return ok
end

local function options(where, opts, allowed)
  if opts == nil then
    return {}
  end
  if type(opts) ~= "table" then
    input_error(where, "expected an option table, got %s", type(opts))
  end
  for k in pairs(opts) do
    if not allowed[k] then
      input_error(where, "unexpected option '%s'", tostring(k))
    end
  end
  return opts
end

local function want(where, name, v, kind, optional)
  if v == nil and optional then
    return v
  end
  if type(v) ~= kind then
    input_error(where, "'%s' must be a %s, got %s", name, kind, type(v))
  end
  return v
end

local cred_keys = {
  token = true, username = true, password = true, ssh_key = true, ssh_key_passphrase = true,
  known_hosts = true,
}

-- credentials: a table of strings or secret values under cred_keys, or the id of a secret in the
-- store whose SecretString is a JSON object of those keys. Values from the store stay secret
-- userdata down to the C binding, so they never become Lua strings.
local function credentials(where, c)
  if c == nil then
    return nil
  end
  if type(c) == "string" then
    local fields = require("tide.secrets").get_fields(c)
    for k in pairs(fields) do
      if not cred_keys[k] then
        input_error(where, "secret '%s': unexpected credentials key '%s'", c, tostring(k))
      end
    end
    return fields
  end
  if type(c) ~= "table" then
    input_error(where, "'credentials' must be a table or a secret id, got %s", type(c))
  end
  for k, v in pairs(c) do
    if not cred_keys[k] then
      input_error(where, "unexpected credentials key '%s'", tostring(k))
    end
    if type(v) ~= "string" and type(v) ~= "userdata" then -- the binding checks it is a secret
      -- The value is a secret: name the key only.
      input_error(where, "credentials '%s' must be a string or a secret, got %s", k, type(v))
    end
  end
  return c
end

local function string_list(where, name, v)
  if v == nil then
    return nil
  end
  if type(v) == "string" then
    return { v }
  end
  if type(v) ~= "table" then
    input_error(where, "'%s' must be a string or a list of strings, got %s", name, type(v))
  end
  for i, s in ipairs(v) do
    if type(s) ~= "string" then
      input_error(where, "'%s' item %d must be a string, got %s", name, i, type(s))
    end
  end
  return v
end

local function iso_date(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", t)
end

local function with_dates(info)
  info.author.date = iso_date(info.author.time)
  info.committer.date = iso_date(info.committer.time)
  return info
end

-- A remote operation. fn(ctl) calls the native with the control last. The control aborts the
-- transfer when this call unwinds early (cancellation, a raising progress function), so an
-- abandoned clone stops at its next progress report instead of running on. With a progress
-- function the native runs in a child task while this one polls the control every 100 ms and
-- calls progress on this task, never on a worker.
local function remote(what, progress, fn)
  local ctl <close> = native.control()
  if not progress then
    return check(fn(ctl))
  end
  local child = tide.spawn(what, function()
    return table.pack(fn(ctl))
  end)
  -- A raising progress function leaves nobody waiting for the child: cancel it (a no-op once
  -- it has finished).
  local _ <close> = setmetatable({}, { __close = function() child:cancel() end })
  local list = { child }
  repeat
    local done = tide.wait_any(list, 0.1)
    local p = ctl:poll()
    if p then
      progress(p)
    end
  until done
  local r = child:wait()
  return check(table.unpack(r, 1, r.n))
end

local function new_repo(info)
  return setmetatable({ path = info.path, bare = info.bare }, Repo)
end

--- git.init(path [, {bare=}]) -> repo: creates a repository (an existing one is reopened).
function M.init(path, opts)
  want("git.init", "path", path, "string")
  opts = options("git.init", opts, { bare = true })
  return new_repo(check(native.init(path, opts.bare and true or false)))
end

--- git.open(path) -> repo: the repository at path (a work tree or a bare repository).
function M.open(path)
  want("git.open", "path", path, "string")
  return new_repo(check(native.open(path)))
end

local clone_keys = { branch = true, depth = true, bare = true, progress = true, credentials = true }

--- git.clone(url, dir [, opts]) -> repo
function M.clone(url, dir, opts)
  want("git.clone", "url", url, "string")
  want("git.clone", "dir", dir, "string")
  opts = options("git.clone", opts, clone_keys)
  want("git.clone", "branch", opts.branch, "string", true)
  want("git.clone", "progress", opts.progress, "function", true)
  if opts.depth ~= nil and (math.type(opts.depth) ~= "integer" or opts.depth < 1) then
    input_error("git.clone", "'depth' must be a positive integer")
  end
  local creds = credentials("git.clone", opts.credentials)
  remote("git.clone", opts.progress, function(ctl)
    return native.clone(url, dir, opts.branch, opts.bare and true or false, creds, ctl)
  end)
  return new_repo(check(native.open(dir)))
end

--- git.ls_remote(url [, {credentials=}]) -> {ref = id}: what a remote advertises, HEAD included.
function M.ls_remote(url, opts)
  want("git.ls_remote", "url", url, "string")
  opts = options("git.ls_remote", opts, { credentials = true })
  local creds = credentials("git.ls_remote", opts.credentials)
  return remote("git.ls_remote", nil, function(ctl)
    return native.ls_remote(nil, url, creds, ctl)
  end)
end

--- git.checkout_to(url_or_path, rev, dir [, opts]) -> repo: a fresh clone of url into dir with
--- rev checked out; dir is removed again when the clone or the checkout fails.
function M.checkout_to(url, rev, dir, opts)
  want("git.checkout_to", "url", url, "string")
  want("git.checkout_to", "rev", rev, "string")
  want("git.checkout_to", "dir", dir, "string")
  opts = options("git.checkout_to", opts, { credentials = true, progress = true })
  local existed = fs.exists(dir)
  local repo = M.clone(url, dir, { credentials = opts.credentials, progress = opts.progress })
  local ok, err = pcall(repo.checkout, repo, rev, { force = true })
  if not ok then
    if not existed then
      fs.rm_r(dir)
    end
    error(err, 0)
  end
  return repo
end

--- git.redact_url(url) -> url with its password replaced by "***", for logs.
M.redact_url = native.redact_url

--- repo:fetch([{remote=, refspecs=, credentials=, progress=}])
function Repo:fetch(opts)
  opts = options("repo:fetch", opts,
    { remote = true, refspecs = true, credentials = true, progress = true })
  want("repo:fetch", "remote", opts.remote, "string", true)
  want("repo:fetch", "progress", opts.progress, "function", true)
  local refspecs = string_list("repo:fetch", "refspecs", opts.refspecs)
  local creds = credentials("repo:fetch", opts.credentials)
  remote("git.fetch", opts.progress, function(ctl)
    return native.fetch(self.path, opts.remote, refspecs, creds, ctl)
  end)
  return self
end

--- repo:checkout(rev [, {force=}]): a branch attaches HEAD; a tag or commit detaches it.
function Repo:checkout(rev, opts)
  want("repo:checkout", "rev", rev, "string")
  opts = options("repo:checkout", opts, { force = true })
  check(native.checkout(self.path, rev, opts.force and true or false))
  return self
end

--- repo:resolve(rev) -> the full commit id
function Repo:resolve(rev)
  want("repo:resolve", "rev", rev, "string")
  return (check(native.resolve(self.path, rev)))
end

--- repo:commit_info(rev) -> {id, short_id, message, summary, author, committer, parents}
function Repo:commit_info(rev)
  want("repo:commit_info", "rev", rev or "HEAD", "string")
  return with_dates(check(native.commit_info(self.path, rev or "HEAD")))
end

--- repo:log([{from=, to=, limit=, paths=}]) -> list of commit infos, newest first
function Repo:log(opts)
  opts = options("repo:log", opts, { from = true, to = true, limit = true, paths = true })
  want("repo:log", "from", opts.from, "string", true)
  want("repo:log", "to", opts.to, "string", true)
  if opts.limit ~= nil and (math.type(opts.limit) ~= "integer" or opts.limit < 1) then
    input_error("repo:log", "'limit' must be a positive integer")
  end
  local paths = string_list("repo:log", "paths", opts.paths)
  local list = check(native.log(self.path, opts.from, opts.to, opts.limit or 0, paths))
  for _, info in ipairs(list) do
    with_dates(info)
  end
  return list
end

--- repo:changed_paths(from, to) -> sorted paths that differ between the two commits' trees
function Repo:changed_paths(from, to)
  want("repo:changed_paths", "from", from, "string")
  want("repo:changed_paths", "to", to, "string")
  return (check(native.changed_paths(self.path, from, to)))
end

--- repo:tags() -> {{name=, id=}} sorted by name; id is the commit (annotated tags peeled)
function Repo:tags()
  return (check(native.tags(self.path)))
end

--- repo:branches([{remote=}]) -> {{name=, id=}} sorted; remote = true lists "origin/main"...
function Repo:branches(opts)
  opts = options("repo:branches", opts, { remote = true })
  return (check(native.branches(self.path, opts.remote and true or false)))
end

local status_words = { new = "added" }

--- repo:status() -> {{path=, status=, index=, worktree=}} of every path that is not clean
function Repo:status()
  local list = check(native.status(self.path))
  for _, e in ipairs(list) do
    e.status = e.worktree or status_words[e.index] or e.index
  end
  return list
end

--- repo:add(paths): stages paths (a string or a list; "." is everything), deletions included
function Repo:add(paths)
  if paths == nil then
    input_error("repo:add", "expected a path or a list of paths")
  end
  check(native.add(self.path, string_list("repo:add", "paths", paths)))
  return self
end

--- repo:commit(message [, {author={name=, email=}}]) -> id
function Repo:commit(message, opts)
  want("repo:commit", "message", message, "string")
  opts = options("repo:commit", opts, { author = true })
  local a = opts.author
  if a ~= nil then
    want("repo:commit", "author", a, "table")
    want("repo:commit", "author.name", a.name, "string")
    want("repo:commit", "author.email", a.email, "string")
  end
  return (check(native.commit(self.path, message, a and a.name, a and a.email)))
end

--- repo:head() -> {branch=, id=}: branch is nil when detached, id nil before the first commit
function Repo:head()
  return (check(native.head(self.path)))
end

--- repo:remote_heads([url_or_remote [, {credentials=}]]) -> {ref = id}; default "origin"
function Repo:remote_heads(url, opts)
  url = want("repo:remote_heads", "url", url or "origin", "string")
  opts = options("repo:remote_heads", opts, { credentials = true })
  local creds = credentials("repo:remote_heads", opts.credentials)
  return remote("git.ls_remote", nil, function(ctl)
    return native.ls_remote(self.path, url, creds, ctl)
  end)
end

function Repo:__tostring()
  return "git repository " .. self.path
end

return M
