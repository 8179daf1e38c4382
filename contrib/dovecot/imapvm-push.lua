-- imapvm push: tell imapvm which folders of a user changed, so message-waiting lamps follow
-- without imapvm holding an IMAP connection per mailbox ([mwi] watch = "push" in imapvm.toml).
--
-- For Dovecot 2.3's push_notification Lua driver (Debian 12: in dovecot-core; see
-- imapvm-push.conf beside this file). Once per committed transaction that set or cleared
-- \Seen, \Flagged or \Deleted, expunged, appended or delivered a message, or deleted or renamed a
-- folder, it POSTs {"user": "<login>", "mailboxes": ["INBOX", ...]} with a bearer token to
-- imapvm, using Dovecot's own HTTP client (dovecot.http: nothing to install).
--
-- The call runs inside the IMAP (or LMTP) process before the client gets its answer, so it is
-- bounded: one attempt, imapvm_push_timeout_msecs (default 300) for connect and answer together.
-- imapvm answers at once (it only marks the folders for a recount). When nothing listens
-- (imapvm is not running) the call fails at once and the next change tries again. When a call
-- times out (imapvm hung, or its host unreachable), this session stops trying that URL for
-- imapvm_push_pause_secs (default 30), so it costs each session at most one timeout per pause.
-- imapvm recounts every mailbox when it starts and once every push_safety_recount seconds, so
-- a push lost meanwhile is corrected. Warnings are logged at most once a minute per process.
--
-- Settings (plugin { } in dovecot.conf):
--   imapvm_push_url            http://<imapvm's [http] listen>/mwi/push (an IP address: no DNS);
--                              several imapvm nodes: their URLs separated by spaces (each is
--                              posted in turn; one that fails is paused on its own)
--   imapvm_push_token          the same as [mwi] push_token in imapvm.toml
--   imapvm_push_timeout_msecs  optional, default 300
--   imapvm_push_pause_secs     optional, default 30
--
-- Only some users: leave imapvm_push_url out of plugin { } and give it to the voicemail users
-- alone as a userdb extra field (userdb_imapvm_push_url=...): the others post nothing.

local client = nil
local paused_until = {}  -- URL -> os.time() before which it is not tried
local last_warning = -1
local unlogged = 0

-- Flags whose change can change a voicemail count (new, old, urgent, deleted).
local COUNTED = { ["\\Seen"] = true, ["\\Flagged"] = true, ["\\Deleted"] = true }

local function warn(text)
  local now = os.time()
  if last_warning >= 0 and now - last_warning < 60 then
    unlogged = unlogged + 1
    return
  end
  if unlogged > 0 then
    text = text .. " (" .. unlogged .. " more since the last warning)"
  end
  dovecot.i_warning("imapvm push: " .. text)
  last_warning = now
  unlogged = 0
end

local function json_string(s)
  local escaped = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. escaped .. '"'
end

local function setting(user, name, default)
  local value = user:plugin_getenv(name)
  if value == nil or value == "" then return default end
  return value
end

local function http_client(timeout)
  if client == nil then
    client = dovecot.http.client({
      user_agent = "dovecot-imapvm-push",
      max_attempts = 1,
      max_connect_attempts = 1,
      no_auto_retry = true,
      no_auto_redirect = true,
      connect_timeout_msecs = timeout,
      request_timeout_msecs = timeout,
      request_absolute_timeout_msecs = timeout,
    })
  end
  return client
end

function dovecot_lua_notify_begin_txn(user)
  return { user = user, folders = {}, changed = false }
end

local function changed(ctx, folder)
  if folder ~= nil and folder ~= "" then
    ctx.folders[folder] = true
    ctx.changed = true
  end
end

local function flags_changed(ctx, event)
  for _, flag in ipairs(event.flags or {}) do
    if COUNTED[flag] then
      changed(ctx, event.mailbox)
      return
    end
  end
end

function dovecot_lua_notify_event_message_new(ctx, event) changed(ctx, event.mailbox) end
function dovecot_lua_notify_event_message_append(ctx, event) changed(ctx, event.mailbox) end
function dovecot_lua_notify_event_message_expunge(ctx, event) changed(ctx, event.mailbox) end
function dovecot_lua_notify_event_flags_set(ctx, event) flags_changed(ctx, event) end
function dovecot_lua_notify_event_flags_clear(ctx, event) flags_changed(ctx, event) end
function dovecot_lua_notify_event_mailbox_delete(ctx, event) changed(ctx, event.mailbox) end
function dovecot_lua_notify_event_mailbox_rename(ctx, event)
  changed(ctx, event.mailbox)
  changed(ctx, event.mailbox_old)
end

local function post(user, url, token, body, timeout)
  local request = http_client(timeout):request({ url = url, method = "POST" })
  request:add_header("Authorization", "Bearer " .. token)
  request:add_header("Content-Type", "application/json")
  request:set_payload(body)
  local response = request:submit()
  local status = response:status()
  if status >= 200 and status < 300 then return end
  -- A new client next time: this one remembers a failed peer and would hold the next request
  -- back (its connect backoff) until the timeout, even once imapvm is back.
  client = nil
  local reason = response:reason() or ""
  if status == 401 then
    warn("imapvm refused the token (401): imapvm_push_token differs from [mwi] push_token")
  elseif status < 9000 or (status == 9003 and string.find(reason, "refused", 1, true)) then
    -- imapvm answered, or nothing listens (it is not running): that failed at once and
    -- costs nothing, so the next change tries again (it may be back by then)
    warn(string.format("%s: %d %s", url, status, reason))
  else
    -- timed out, or a connection that went nowhere: do not make every change wait for it
    local pause = tonumber(setting(user, "imapvm_push_pause_secs", "30")) or 30
    paused_until[url] = os.time() + pause
    warn(string.format("%s: %d %s; not trying again for %d s", url, status, reason, pause))
  end
end

function dovecot_lua_notify_end_txn(ctx, success)
  if not success or not ctx.changed then return end
  local user = ctx.user
  local urls = setting(user, "imapvm_push_url", nil)
  if urls == nil then return end  -- not a voicemail user (see "Only some users" above)
  local token = setting(user, "imapvm_push_token", nil)
  if token == nil then
    warn("imapvm_push_token must be set in plugin { } with imapvm_push_url")
    return
  end
  local timeout = tonumber(setting(user, "imapvm_push_timeout_msecs", "300")) or 300
  local names = {}
  for folder in pairs(ctx.folders) do names[#names + 1] = json_string(folder) end
  local body = '{"user":' .. json_string(user.username) .. ',"mailboxes":['
    .. table.concat(names, ",") .. "]}"
  local now = os.time()
  for url in string.gmatch(urls, "%S+") do
    if now >= (paused_until[url] or 0) then
      local ok, err = pcall(post, user, url, token, body, timeout)
      if not ok then warn("push to " .. url .. " failed: " .. tostring(err)) end
    end
  end
end
