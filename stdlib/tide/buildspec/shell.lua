--- tide.buildspec.shell: the one shell of a build. A long-lived bash or sh reads, from its
--- stdin, the numbers of generated script files and sources each in the shell's own process, so
--- `cd`, `export` and plain variables carry from command to command and from phase to phase.
--- Each phase ends with a marker line carrying a per-build nonce, a tag and the phase's results;
--- the marker is how tide knows the phase is over. Command output is one stream (stderr joined
--- to stdout), in order.
---
--- Each command runs in the shell itself, wrapped in a few builtins (see phase_text): before it,
--- the shell writes a tag line naming it, which tide turns into the `Running command` line.
--- Phases that need nothing from tide in between go to the shell in one script, so the shell
--- does not wait for tide between them (see run_phase).
---
--- When a command ends the shell (`exit 3`, `set -e`), the last tag names it; the EXIT trap
--- writes the stages' statuses so far, the exported variables and the working directory, and
--- the next script runs in a new shell that restores them. The same save and restore carry the
--- state to a shell of another user (run-as).
local tide = require("tide")
local native = require("tide._proc")

local M = {}

-- Runs in the shell itself: stdin moves to fd 9 so that commands read /dev/null, never the
-- script paths; the EXIT trap saves the state a new shell restores. Every script sets __tide_e
-- as it returns: a script cut short (a command's `return` or `continue`, a syntax error the
-- shell did not recover from) ends the shell, never leaves tide waiting for a marker.
local DRIVER = [[
exec 9<&0 </dev/null 8>&2 2>&1
__tide_d=$1
__tide_s=0 __tide_f=0
__tide_exit() {
  __TIDE_PWD=$PWD; export __TIDE_PWD; export -p >"$__tide_d/state" 2>/dev/null
  printf 's %s %s\n' "$__tide_s" "$__tide_f" >"$__tide_d/status"
}
trap __tide_exit EXIT
if [ -f "$__tide_d/state" ]; then . "$__tide_d/state" 2>/dev/null; cd "$__TIDE_PWD" 2>/dev/null; fi
__tide_e=1
while [ -n "$__tide_e" ] && IFS= read -r __tide_p <&9; do
  case $__tide_p in '') trap - EXIT; exit 0 ;; esac
  __tide_p=$__tide_d/s$__tide_p.sh
  [ -r "$__tide_p" ] || { printf 'tide: the build shell cannot read %s\n' "$__tide_p"; exit 126; }
  __tide_e=
  . "$__tide_p"
done
[ -n "$__tide_e" ] || { echo 'tide: a script of the build shell ended early'; exit 2; }
]]

-- After each marker: a line on the shell's original stderr (fd 8). Output is read a batch at a
-- time (stdout_batch); the wake-up makes tide read at once, stdout first, so the marker, whose
-- place among the output lines is on stdout, is seen without waiting for the batch.
local WAKE = "echo >&8"

local function squote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
M.squote = squote

local function current_user()
  return os.getenv("USER") or os.getenv("LOGNAME")
end

local Session = {}
Session.__index = Session

--- o: dir (private, exists), shell ("bash" or "sh"), env, cwd, deadline (monotime), sandbox
--- (table or nil), version ("0.1"/"0.2"), on_line(text), masks (list of strings), on_sent()
--- (called each time a script has gone to the shell: work to do while it runs), early (a
--- process from M.prepare with the same cwd and sandbox: the first shell runs there).
function M.new(o)
  local s = setmetatable({}, Session)
  for k, v in pairs(o) do
    s[k] = v
  end
  s.nonce = tide.random_hex(6)
  s.seq = 0
  s.warnings = s.warnings or {}
  return s
end

-- As tide's output masking (include/tide/mask.h, TIDE_MASK_MIN_LEN): shorter values would turn
-- common words into "***", so they are not masked anywhere.
local MASK_MIN_LEN = 8

--- Masks the store values in a line (the process layer already masks the raw output; this
--- covers text tide composes itself, such as phase contexts and exported values).
function Session:mask(line)
  local masks = self.masks
  if not masks then
    return line
  end
  for _, m in ipairs(masks) do
    if #m >= MASK_MIN_LEN then
      local from = 1
      while true do
        local i, j = line:find(m, from, true)
        if not i then
          break
        end
        line = line:sub(1, i - 1) .. "***" .. line:sub(j + 1)
        from = i + 3
      end
    end
  end
  return line
end

-- How the shell's process is started, whether with its program or before it (prepare).
local function shell_spec(cwd, sandbox, timeout)
  return { cwd = cwd, stdin = true, lines = true, name = "buildspec shell", grace = 2,
    stdout_batch = 0.002, timeout = timeout and math.max(0.001, timeout), sandbox = sandbox }
end

--- Starts a build's sandbox before its shell is known: the sandbox is made while tide works
--- out the rest, and the session whose `early` it becomes hands it the shell (Session:spawn).
--- o: cwd, sandbox (the policy the session will have), timeout (seconds). Returns the process,
--- or nil when it cannot be started (the session's own start then reports why).
function M.prepare(o)
  local spec = shell_spec(o.cwd, o.sandbox, o.timeout)
  spec.exec_later = true
  local ok, p = pcall(native.spawn, spec)
  return ok and p or nil
end

function Session:spawn()
  local path = self.shell == "bash" and "bash" or "/bin/sh"
  local argv = { path, "-c", DRIVER, "tide-build", self.dir }
  local me = current_user()
  if self.user and self.user ~= me then
    argv = { "runuser", "-u", self.user, "--", table.unpack(argv) }
  end
  if self.early then
    local p = self.early
    self.early = nil
    argv.env = self.env
    local ok, done, msg, code = pcall(p.exec, p, argv)
    if ok and done then
      self.p = p
      self.input_ended = nil
      return
    end
    p:close()
    if not ok then
      error(tide.error("EINPUT", "buildspec shell: " .. tostring(done)), 0)
    end
    error(tide.error(code or "ESPAWN", "buildspec shell: " .. tostring(msg)), 0)
  end
  local spec = shell_spec(self.cwd, self.sandbox,
    self.deadline and self.deadline - tide.monotime())
  spec.env = self.env
  for i, a in ipairs(argv) do
    spec[i] = a
  end
  -- A sandbox that cannot be built fails the build: never a silent run without it (only
  -- --no-sandbox, which leaves self.sandbox nil, runs unsandboxed).
  local ok, p, msg, code = pcall(native.spawn, spec)
  if not ok then
    error(tide.error("EINPUT", "buildspec shell: " .. tostring(p)), 0)
  end
  if not p then
    error(tide.error(code or "ESPAWN", "buildspec shell: " .. tostring(msg)), 0)
  end
  self.p = p
  self.input_ended = nil
end

-- A stage's result is the last of its commands that started (the last tag seen, see
-- wait_marker) and the stage's status in the shell, nil while that command runs. Commands
-- after a failure are skipped, so every earlier one exited 0; first is the index the script
-- started the stage at. Fills out[i] = {command, code} from cmds; returns the index of the
-- command still running, or nil.
local function stage_results(out, cmds, first, last, code)
  for i = first, last or 0 do
    if i < last then
      out[i] = { command = cmds[i], code = 0 }
    elseif not code then
      return i
    else
      out[i] = { command = cmds[i], code = code }
    end
  end
end

-- Records the results of a script that started at from ({stage, index}) in result ({commands,
-- finally}), from the tags seen and the stages' statuses (numbers; the finally stage's is nil
-- while one of its commands runs, the commands stage's too while finally has not started).
-- Returns the command still running ({stage, index}) or nil.
function Session:results(result, from, cs, fs)
  local ph, started = self.phase, self.started
  local open
  if from.stage == "c" then
    local i = stage_results(result.commands, ph.commands, from.index, started.c, cs)
    open = i and { stage = "c", index = i }
  end
  if started.f then
    local i = stage_results(result.finally, ph.finally, from.stage == "f" and from.index or 1,
      started.f, fs)
    open = i and { stage = "f", index = i } or open
  end
  return open
end

--- The results of a shell that ended during a script that started at from: the stages'
--- statuses its EXIT trap wrote (the file is removed) and the tags seen. Records them as
--- Session:results does and returns what it does.
function Session:read_status(result, from)
  local path = self.dir .. "/status"
  local f = io.open(path, "rb")
  local data = f and f:read("a") or ""
  if f then
    f:close()
    os.remove(path)
  end
  -- Ended in the commands stage, the last command that started did it; else that stage is over.
  local cs = self.started.f and (tonumber(data:match("^s (%d+)")) or 0) or nil
  return self:results(result, from, cs, nil)
end

-- A phase's end: text before it, nonce, tag, the stages' statuses. A tag before a command:
-- text before it, nonce, stage letter (c commands, f finally) and index; "s" and a status
-- after a stage whose last command failed.
local END_PAT = "^(.-) ?%[tide:(%x+) (%d+)([ %d]*)%]$"
local TAG_PAT = "^(.-)%[tide:(%x+) ([cfs])(%d+)%]$"

--- Hands a script to the shell (without waiting). Two files in turn: the shell has finished
--- the one before last (it has read the next name since), so rewriting it is safe whatever the
--- shell reads ahead. Rewritten in place, not truncated: ext4 flushes a file truncated and
--- written again on close, which costs more than a whole phase; `return` ends the script
--- before what an older, longer one left. The shell reads its channel a byte at a time (a
--- pipe), so it gets the file's number only.
function Session:send(script)
  if not self.p then
    self:spawn()
  end
  self.pending = nil
  self.seq = self.seq + 1
  local slot = self.seq % 2
  local f = io.open(string.format("%s/s%d.sh", self.dir, slot), "r+b")
    or assert(io.open(string.format("%s/s%d.sh", self.dir, slot), "wb"))
  f:write(script, "\n__tide_e=1; return\n")
  f:close()
  self.p:write(slot .. "\n")
  if self.on_sent then
    self.on_sent()
  end
end

-- The lines of a tag: the `Running command` line of the command it names, or the failure line
-- of the last command that started. Their text is tide's copy of the command.
function Session:tag_lines(before, stage, n)
  local started, ph = self.started, self.phase
  local line
  if stage == "s" then
    local i = started.f or started.c
    local cmd = started.f and ph.finally[i] or ph.commands[i]
    line = string.format("%s[Container] Command did not exit successfully %s exit status %s",
      before, cmd, n)
  else
    local i = tonumber(n)
    started[stage] = i
    line = before .. "[Container] Running command "
      .. (stage == "c" and ph.commands[i] or ph.finally[i])
  end
  line = self:mask(line)
  -- A line per line of a multi-line command; most are one line (gmatch would cost more than the
  -- rest of a tag together: this runs for every command).
  if not line:find("\n", 1, true) then
    self.on_line(line)
    return
  end
  for l in (line .. "\n"):gmatch("(.-)\n") do
    self.on_line(l)
  end
end

-- The lines of a batch without the wake-ups (see WAKE: an empty line each on stderr); anything
-- else there is a command writing to fd 8, logged as it comes. Edits got in place.
local function drop_wakeups(streams, got)
  for k = #got, 1, -1 do
    if streams[k] == "stderr" and got[k] == "" then
      table.remove(got, k)
    end
  end
  return got
end

--- Reads the shell's output up to the marker line tagged tag. Returns "done" and the marker's
--- fields (a string), or "exited" with the native result when the shell ended first. Lines
--- after the marker (the next phase, already under way) wait in self.rest for the next call.
--- The tags of commands update self.started ({c = index, f = index}: the last that started).
function Session:wait_marker(tag, quiet)
  local on_line, want = self.on_line, self.nonce
  local masks = self.masks
  local plain = not masks or #masks == 0
  local lines, i = self.rest, self.rest_i
  self.rest = nil
  while true do
    if not lines then
      local r, streams, got = self.p:wait()
      if r ~= "lines" then
        self.p:close()
        self.p = nil
        self.pending = nil
        return "exited", r
      end
      lines, i = drop_wakeups(streams, got), 1
    end
    for k = i, #lines do
      local l = lines[k]
      local before, n, t, fields
      if l:find("[tide:", 1, true) then
        before, n, t, fields = l:match(END_PAT)
        if not n then
          local b, tn, stage, num = l:match(TAG_PAT)
          if tn == want then
            self:tag_lines(b, stage, num)
            goto next
          end
        end
      end
      if n == want then
        if before ~= "" and not quiet then
          on_line(plain and before or self:mask(before))
        end
        if tonumber(t) == tag then
          if k < #lines then
            self.rest, self.rest_i = lines, k + 1
          end
          return "done", fields
        end
      else
        on_line(plain and l or self:mask(l))
      end
      ::next::
    end
    lines = nil
  end
end

--- Hands what was read past the last marker to on_line, so that none of it is lost: lines a
--- command wrote to fd 8 (read with a later batch of stdout) or a background process printed.
--- Call it when no phase is under way.
function Session:flush_rest()
  local lines, i = self.rest, self.rest_i
  self.rest = nil
  -- What a command wrote to fd 8 may still be unread when the last marker is taken (two pipes
  -- keep no order): taken now, or the shell's end would drop it.
  local p = self.p
  while p and p:read_pending() do
    local r, streams, got = p:wait()
    if r ~= "lines" then
      break
    end
    lines, i = lines or {}, i or 1
    table.move(drop_wakeups(streams, got), 1, #got, #lines + 1, lines)
  end
  for k = i or 1, lines and #lines or 0 do
    local l = lines[k]
    local _, n = l:match(END_PAT)
    if not n then
      _, n = l:match(TAG_PAT)
    end
    if n ~= self.nonce then
      self.on_line(self:mask(l))
    end
  end
end

--- Runs a script that is not a phase and waits for its end: "done", or "exited" and the
--- native result.
function Session:exec(script, quiet)
  self.tags = (self.tags or 0) + 1
  local tag = self.tags
  self:send(string.format("%s\nprintf '%%s\\n' ' [tide:%s %d]'; %s", script, self.nonce, tag,
    WAKE))
  return self:wait_marker(tag, quiet)
end

--- Tells the shell to end once it has run what it was sent, without waiting (nothing here
--- yields): the shell goes even if whoever was to wait for it never runs. last: as for stop.
function Session:end_input(last)
  if self.p and not self.input_ended then
    if last then
      self.p:write("\n")
    end
    self.p:close_stdin()
    self.input_ended = true
  end
end

--- Ends the shell. Its EXIT trap saves the state for the next one, unless last (the build is
--- over: an empty line makes the shell exit without writing anything).
function Session:stop(last)
  if self.p then
    self:end_input(last)
    local r
    repeat
      r = self.p:wait()
    until r ~= "lines"
    self.p:close()
    self.p = nil
    self.pending, self.rest = nil, nil
    -- What the trap wrote is not a phase's: a later shell's results must not mix with it.
    os.remove(self.dir .. "/status")
  end
end

function Session:close()
  self.pending, self.rest = nil, nil
  if self.early then
    self.early:close()
    self.early = nil
  end
  if self.p then
    self.p:close()
    self.p = nil
  end
end

--- Switches the shell to another user before the next script (state carried over).
function Session:set_user(user)
  local want = user
  if want == current_user() then
    want = nil
  end
  if want and require("tide.uv").getuid() ~= 0 then
    return nil, string.format("run-as %s: tide runs as %s and can switch users only as root",
      want, tostring(current_user()))
  end
  if want ~= self.user then
    self:stop()
    self.user = want
  end
  return true
end

--- The script of one phase, from stage/index on (a new shell resumes a phase where the old one
--- ended). Commands after the first failure are skipped; finally runs after commands. The
--- phase ends with its marker line, tagged tag, which carries the stages' statuses.
---
--- A command costs three builtins besides itself: the `case` on its stage's status, the echo
--- of its tag and the assignment of its status. The shell's parsing and running of this text
--- is most of a phase's cost, so nothing else is done per command: which command runs is the
--- last tag, and a stage's result is its last command and the stage's status (every earlier
--- command exited 0).

-- Reserved words of sh and bash that may start a command made of plain words.
local RESERVED = {}
for w in ("case coproc do done elif else esac fi for function if in select then time until "
  .. "while"):gmatch("%S+") do
  RESERVED[w] = true
end

-- Whether cmd reads the same written into the script as through eval: plain words (no quote,
-- expansion, operator, comment or glob), and not a reserved word first. Anything else goes
-- through eval, so that each command is parsed alone: an unclosed quote or a stray `fi` fails
-- that command and nothing around it.
local function as_written(cmd)
  local first = cmd:match("^ *([%w_./:,=+@-]+)")
  return first ~= nil and not RESERVED[first] and not cmd:find("[^%w_./:,=+@ -]")
end

local function phase_text(out, ph, from, tag, mark, subshell)
  out[#out + 1] = "export CODEBUILD_BUILD_SUCCEEDING=$__tide_ok"
  out[#out + 1] = string.format("__tide_s=%d __tide_f=%d", from.cfail and 1 or 0,
    from.ffail and 1 or 0)
  if from.stage == "c" and from.index == 1 then
    out[#out + 1] = "printf '%s\\n' " .. squote("[Container] Entering phase " .. ph.type)
  end
  local function stage(list, first, letter, status)
    if first > #list then
      return
    end
    local head = "case $" .. status .. " in 0) echo '[tide:" .. mark .. " " .. letter
    local tail = "; " .. status .. "=$?;; esac"
    for i = first, #list do
      local cmd, after = list[i], ""
      if not as_written(cmd) then
        -- After eval failed on an unexpected end (an unclosed quote), bash 5.2 fails to parse
        -- a `case` that comes next: a simple command in between keeps it right.
        cmd, after = "eval " .. squote(cmd), "\n:"
      end
      out[#out + 1] = head .. i .. "]'; " .. (subshell and "(" .. cmd .. ")" or cmd) .. tail
        .. after
    end
    -- Only the last command that ran can have failed: one line for the stage.
    out[#out + 1] = "case $" .. status .. " in 0) ;; *) echo \"[tide:" .. mark .. " s$"
      .. status .. "]\";; esac"
  end
  if from.stage == "c" then
    stage(ph.commands, from.index, "c", "__tide_s")
  end
  stage(ph.finally, from.stage == "f" and from.index or 1, "f", "__tide_f")
  out[#out + 1] = "case $__tide_s$__tide_f in 00) __tide_t=SUCCEEDED;; "
    .. "*) __tide_t=FAILED __tide_ok=0;; esac"
  out[#out + 1] = string.format("printf '%%s%%s [tide:%s %d %%s %%s]\\n' %s "
    .. "\"$__tide_t\" $__tide_s $__tide_f; " .. WAKE, mark, tag,
    squote("[Container] Phase complete: " .. ph.type .. " State: "))
end

--- The script of ph from `from` on, followed by the phases of rest (each {ph, stops}: a failure
--- of a phase whose stops is true ends the build's phases, so the script returns there, as
--- the caller then does). Returns the script and the list of {ph, tag} sent after ph.
function Session:phase_script(ph, succeeding, from, rest)
  local out = { "__tide_ok=" .. (succeeding and "1" or "0") }
  local subshell = self.version == "0.1"
  self.tags = (self.tags or 0) + 1
  local tag = self.tags
  phase_text(out, ph, from or { stage = "c", index = 1 }, tag, self.nonce, subshell)
  local pending = {}
  for i, nx in ipairs(rest or {}) do
    if (i == 1 and rest.stops) or (i > 1 and rest[i - 1].stops) then
      out[#out + 1] = "case $__tide_t in FAILED) __tide_e=1; return;; esac"
    end
    self.tags = self.tags + 1
    pending[#pending + 1] = { ph = nx.ph, tag = self.tags }
    phase_text(out, nx.ph, { stage = "c", index = 1 }, self.tags, self.nonce, subshell)
  end
  return table.concat(out, "\n"), tag, pending
end

--- Runs one phase. rest: the phases that follow without anything to do between them (see
--- phase_script; rest.stops: a failure of ph ends the phases), sent to the shell with ph so
--- that it goes on without waiting; a later call for one of them finds it under way. Returns
--- {status = "SUCCEEDED"|"FAILED"|"TIMED_OUT", commands = {...}, context = {statusCode,
--- message} or nil}.
function Session:run_phase(ph, succeeding, rest)
  local result = { commands = {}, finally = {} }
  local from
  self.phase = ph
  while true do
    local how, r
    local queued = self.pending
    self.started = {}
    local at = from or { stage = "c", index = 1 }
    if not from and queued and queued[1] and queued[1].ph == ph then
      -- Sent with an earlier phase: the shell is already on it.
      how, r = self:wait_marker(table.remove(queued, 1).tag)
    else
      local script, tag, pending = self:phase_script(ph, succeeding, from, rest)
      self:send(script)
      self.pending = pending
      how, r = self:wait_marker(tag)
    end
    if how == "done" then
      local cs, fs = r:match("^ (%d+) (%d+)$")
      self:results(result, at, tonumber(cs), tonumber(fs))
      break
    end
    local open = self:read_status(result, at)
    if r.timed_out then
      result.status = "TIMED_OUT"
      result.context = { statusCode = "BUILD_TIMED_OUT", message = "Build has timed out." }
      return result
    end
    if not open then
      -- The shell ended outside any command: nothing of the phase can be trusted.
      result.status = "FAILED"
      result.context = { statusCode = "COMMAND_EXECUTION_ERROR", message = string.format(
        "the build shell ended unexpectedly with status %d", r.code) }
      return result
    end
    -- A command ended the shell: that is its status; go on in a new shell.
    local list = open.stage == "c" and result.commands or result.finally
    list[open.index] = { command = open.stage == "c" and ph.commands[open.index]
      or ph.finally[open.index], code = r.code }
    local txt = open.stage == "c" and ph.commands[open.index] or ph.finally[open.index]
    if r.code ~= 0 then
      self.on_line(self:mask(string.format(
        "[Container] Command did not exit successfully %s exit status %d", txt, r.code)))
    end
    local cfail = (from and from.cfail) or (open.stage == "c" and r.code ~= 0)
    local ffail = (from and from.ffail) or (open.stage == "f" and r.code ~= 0)
    if open.stage == "c" and r.code == 0 then
      from = { stage = "c", index = open.index + 1 }
    elseif open.stage == "c" then
      from = { stage = "f", index = 1 }
    elseif r.code == 0 then
      from = { stage = "f", index = open.index + 1 }
    else
      from = { stage = "f", index = #ph.finally + 1 }
    end
    from.cfail, from.ffail = cfail, ffail
  end
  local failed
  for _, list in ipairs({ result.commands, result.finally }) do
    for i = 1, #list do
      if list[i] and list[i].code and list[i].code ~= 0 and not failed then
        failed = list[i]
      end
    end
  end
  if failed then
    result.status = "FAILED"
    result.context = { statusCode = "COMMAND_EXECUTION_ERROR", message = self:mask(
      string.format("Error while executing command: %s. Reason: exit status %d",
        failed.command, failed.code)) }
  else
    result.status = "SUCCEEDED"
  end
  return result
end

--- Values of names in the shell now: {name = value} for the set ones.
function Session:capture(names)
  if #names == 0 then
    return {}
  end
  local file = self.dir .. "/captured"
  local parts = { "{" }
  for _, n in ipairs(names) do
    parts[#parts + 1] = string.format(
      "if [ -n \"${%s+x}\" ]; then printf '%%s=%%s\\0' %s \"$%s\"; fi", n, n, n)
  end
  parts[#parts + 1] = "} >" .. squote(file)
  local how = self:exec(table.concat(parts, "\n"), true)
  local out = {}
  if how ~= "done" then
    return out
  end
  local f = io.open(file, "rb")
  local data = f and f:read("a") or ""
  if f then
    f:close()
  end
  for k, v in data:gmatch("([%w_]+)=(.-)%z") do
    out[k] = v
  end
  return out
end

--- Expands text with the shell's syntax, as artifact names are ("app-$(date +%F)").
function Session:expand(text)
  local file = self.dir .. "/expanded"
  local esc = text:gsub("[\\\"]", "\\%0")
  local how = self:exec(string.format("printf '%%s' \"%s\" >%s", esc, squote(file)), true)
  if how ~= "done" then
    return nil
  end
  local f = io.open(file, "rb")
  local v = f and f:read("a")
  if f then
    f:close()
  end
  return v
end

--- Output of a shell snippet (runtime version probes), or nil.
function Session:output(snippet)
  local file = self.dir .. "/output"
  local how = self:exec(string.format("{ %s ; } >%s 2>&1", snippet, squote(file)), true)
  if how ~= "done" then
    return nil
  end
  local f = io.open(file, "rb")
  local v = f and f:read("a")
  if f then
    f:close()
  end
  return v
end

return M
