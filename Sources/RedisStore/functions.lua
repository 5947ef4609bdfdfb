#!lua name=approvald
-- The Redis Functions every instance calls: each load and each commit of a user's state is one call, atomic on the
-- server. Loaded at start with FUNCTION LOAD REPLACE unless a newer library is already there.
--
-- Keys (`{p}` is the user's partition, four digits, so that a user's keys share a cluster slot):
--   ap:{p}:u:<tenant>\n<user>  the state: "<version>|<pending>|<queue entries>|" then UserStateCodec's bytes
--   ap:{p}:due                 sorted set: user field → the state's next deadline
--   ap:dueparts                sorted set: partition → at most its earliest deadline (a commit lowers it, a look
--                              for due users sets it again), so that a look reads only partitions with one due
--   ap:{p}:ch                  hash: challenge or enrollment id → user field (both kinds of id name their
--                              partition): a challenge while it is pending, and after its end until a sweep forgets
--                              it where states hold their ended challenges (formats 1 and 2); an enrollment until
--                              it is forgotten
--   ap:{p}:c:<challenge>       "<request_id>|<tenant>\n<user>": whose ended challenge it is, where the state keeps
--                              it apart (format 3), until the end of its window
--   ap:dev:<device>            "<p>|<tenant>\n<user>": who holds a device id
--   ap:key:<hex of the key>    "<p>|<tenant>\n<user>": the user a device key was last saved to (a device removed or
--                              re-keyed leaves it: a reader checks the user's devices)
--   ap:act:<hex of a SHA-256>  "<p>|<tenant>\n<user>": whose enrollment an activation code is, until the enrollment
--                              is forgotten (expiring at the latest it may be); the code itself is never stored
--   ap:req:<tenant>\n<request> "<p>|<tenant>\n<user>": who holds a request_id, from its challenge's creation (or its
--                              fallback's) to the end of its window, a minute later should no sweep forget a fallback
--                              first; then "\n" and the record of the challenge once it has ended (UserStateCodec)
--   ap:{p}:out                 hash: challenge id → callback
--                              "<attempts>|<next attempt>|<ended>|<tenant>|<traceparent>|<body>"
--   ap:{p}:outdue              sorted set: challenge id → next attempt (the outbox in due order, as with SQLite)
--   ap:dl:<tenant>             hash: challenge id → dead letter
--                              "<status>|<dead at>|<attempts>|<ended>|<p>|<detail bytes>|<detail><traceparent>|<body>"
--                              (RedisOutbox reads callbacks and dead letters of the release before, without the
--                              traceparent, too)
--   ap:dlt:<tenant>            sorted set: challenge id → dead at (newest first for the list)
--   ap:route:<device>          the instance that holds the device's event stream (expires unless renewed)
--   ap:lp:<challenge>          set: the instances with a long poll of the challenge (expires after the longest)
--   ap:inbox:<instance>        channel: deliveries committed elsewhere for the instance's streams and long polls
--   ap:gauges                  hash: c:<tenant> (the tenant's pending challenges and queue entries, packed as
--                              pending * 10^10 + queue: one write for a commit that changes both), kept by every
--                              commit, so that one read gives the figures every instance reports; pending and
--                              q:<tenant>, as version 10 kept them, still count, unchanged since
--   ap:instances               sorted set: instance → when it last said it is alive
--   ap:membership              hash: live (the live instances by name, which share the partitions' callbacks),
--                              since (when that set began), before (the live set before it), format (the newest
--                              state format every live instance has read since: only ever raised; none means 2)
--   ap:formats                 hash: instance → the newest state format it reads, kept while some live instance
--                              reads an older one than `format` says (a release before's instance names none)
-- The forward queue is the length of every partition's outbox hash. Times are Unix milliseconds.
--
-- No index says which partitions hold callbacks (version 10 kept one, ap:outparts, which an instance deletes when it
-- loads this library): keeping it cost three writes a callback, while a read of due callbacks, about once a second,
-- asks with one EXISTS whether any partition it forwards holds a callback, and only then looks at the earliest entry
-- of each (at most 1,024 cheap reads).

-- Raised whenever the functions change; an instance refuses to replace a newer library (FunctionLibrary.swift reads
-- this line).
local LIBRARY_VERSION = 12
-- Users hash to this many partitions (Core's Partition.count).
local PARTITIONS = 1024

-- Numbers stay strings wherever they can: Redis formats a Lua number passed to redis.call with "%.17g",
-- which costs more than the command it is for, and turning a string into a number parses it.
local function counts(value)
  return string.match(value, '^(%d+)|(%d+)|(%d+)|')
end

-- Whether one count or time in decimal digits, without leading zeros, is less than another.
local function less(a, b)
  return #a < #b or (#a == #b and a < b)
end

-- A tenant's counts share a field of ap:gauges: pending * 10^10 + queue. HINCRBY keeps it exact whatever its
-- size, and the split below is exact too, with no arithmetic beyond 2^53: each part is read from its own
-- digits. A part may be below zero (a challenge counted in version 10's fields ends under this one), so
-- the queue's part is taken within ±5 * 10^9 of zero.
local function count_change(new_pending, pending, new_queue, queue)
  return string.format('%d', (tonumber(new_pending) - tonumber(pending)) * 1e10 + tonumber(new_queue)
    - tonumber(queue))
end

local function split_counts(packed)
  local sign, digits = string.match(packed, '^(%-?)(%d+)$')
  local pending = tonumber(string.sub(digits, 1, -11)) or 0
  local queue = tonumber(string.sub(digits, -10))
  if queue >= 5e9 then pending, queue = pending + 1, queue - 1e10 end
  if sign == '-' then return -pending, -queue end
  return pending, queue
end

local function user_key(partition, field)
  return 'ap:{' .. partition .. '}:u:' .. field
end

-- A partition's outbox: its callbacks by challenge id, and their next attempts.
local function outbox_key(tag) return 'ap:{' .. tag .. '}:out' end
local function outbox_due_key(tag) return 'ap:{' .. tag .. '}:outdue' end

local function challenge_key(tag, id) return 'ap:{' .. tag .. '}:c:' .. id end
local function request_key(tenant, request) return 'ap:req:' .. tenant .. '\n' .. request end

-- KEYS: ap:{p}:ch. ARGV: challenge id, partition. → { user field, state } for a challenge in the partition's
-- hash (pending, or ended in a state of format 1 or 2), { user field, state, what ap:req holds for the
-- challenge's request_id (its record) } for an ended challenge kept apart, or nil.
local function load_challenge(keys, args)
  local field = redis.call('HGET', keys[1], args[1])
  if field then return { field, redis.call('GET', user_key(args[2], field)) } end
  local named = redis.call('GET', challenge_key(args[2], args[1]))
  if not named then return nil end
  local request
  request, field = string.match(named, '^([^|]*)|(.*)$')
  local tenant = string.match(field, '^([^\n]*)\n')
  return { field, redis.call('GET', user_key(args[2], field)), redis.call('GET', request_key(tenant, request)) }
end

-- KEYS: ap:dev:<device>. → { user field, state } or nil.
local function load_device(keys, args)
  local holder = redis.call('GET', keys[1])
  if not holder then return nil end
  local partition, field = string.match(holder, '^(%d+)|(.*)$')
  return { field, redis.call('GET', user_key(partition, field)) }
end

local function enqueue(tag, id, callback)
  local next_attempt = string.match(callback, '^%d+|(%d+)|')
  redis.call('HSET', outbox_key(tag), id, callback)
  redis.call('ZADD', outbox_due_key(tag), next_attempt, id)
end

-- The partition's entry in ap:dueparts set to the earliest deadline of its due set, or removed when the set is
-- empty.
local function index_earliest(tag, due)
  local first = redis.call('ZRANGE', due, '0', '0', 'WITHSCORES')
  if #first == 0 then
    redis.call('ZREM', 'ap:dueparts', tag)
  else
    redis.call('ZADD', 'ap:dueparts', first[2], tag)
  end
end

-- Publishes a delivery where it belongs; → whether the committing instance (`me`) delivers it itself: a
-- device's delivery when no other instance holds its stream, a challenge's end always (and to the
-- instances whose long polls wait for it).
local function route(me, kind, target, payload)
  if kind == 'd' then
    local owner = redis.call('GET', 'ap:route:' .. target)
    if owner and owner ~= me then
      redis.call('PUBLISH', 'ap:inbox:' .. owner, payload)
      return '0'
    end
  else
    for _, owner in ipairs(redis.call('SMEMBERS', 'ap:lp:' .. target)) do
      if owner ~= me then redis.call('PUBLISH', 'ap:inbox:' .. owner, payload) end
    end
  end
  return '1'
end

-- The user's entry in the partition's due set and the partition's in ap:dueparts, for a commit whose state's
-- next deadline is `deadline` ('' for none). `previous` is the deadline of the state the commit was decided
-- on ('' for none; nil when the caller did not say, as the release before): the due set holds it, so an
-- unchanged deadline costs no write, and ap:dueparts only ever needs lowering.
local function set_deadline(due, field, deadline, previous)
  if deadline == previous then return end
  if deadline == '' then
    redis.call('ZREM', due, field)
    return
  end
  redis.call('ZADD', due, deadline, field)
  if not previous or previous == '' or less(deadline, previous) then
    redis.call('ZADD', 'ap:dueparts', 'LT', deadline, string.sub(due, 5, 8))
  end
end

-- KEYS: state, due, ap:gauges, challenge index, outbox, outbox due.
-- ARGV: expected version, new state ('' to delete), user field, the deadlines "<next>|<previous>" (each ''
-- for none; the release before sends "<next>" alone), tenant, the committing instance, the number of
-- deliveries, the deliveries as triples (kind 'd' for a device or 'c' for a challenge, its id, the message),
-- then changes as triples: op, name, value — 'S' set a key, 'D' delete a key, 'E' set a key that expires
-- (value "<Unix ms>|<value>"), 'H' set a field of the challenge index, 'h' delete one, 'R' keep an ended
-- challenge apart until the end of its window (name: challenge id, value "<end of window>|<request_id>|
-- <record>"), 'O' enqueue a callback (name: challenge id, value: the callback).
-- → { 1, one '1' (deliver it yourself) or '0' (published) per delivery } committed, 0 stale (nothing
-- written).
local function commit(keys, args)
  -- The counts at the state's head are all the check needs: the state itself stays out of Lua.
  local current = redis.call('GETRANGE', keys[1], '0', '63')
  local version, pending, queue = '0', '0', '0'
  if current ~= '' then
    version, pending, queue = counts(current)
    if not version then return redis.error_reply('ERR the state at ' .. keys[1] .. ' has no counts') end
  end
  if version ~= args[1] then return 0 end
  local new_pending, new_queue = '0', '0'
  if args[2] == '' then
    redis.call('DEL', keys[1])
  else
    local new_version
    new_version, new_pending, new_queue = counts(args[2])
    if not new_version or tonumber(new_version) ~= tonumber(version) + 1 then
      return redis.error_reply('ERR the new state must be version + 1')
    end
    redis.call('SET', keys[1], args[2])
  end
  local deadline, previous = string.match(args[4], '^(%d*)|(%d*)$')
  set_deadline(keys[2], args[3], deadline or args[4], previous)
  if new_pending ~= pending or new_queue ~= queue then
    redis.call('HINCRBY', keys[3], 'c:' .. args[5], count_change(new_pending, pending, new_queue, queue))
  end
  local deliveries = tonumber(args[7])
  local first_change = 8 + 3 * deliveries
  local now = nil
  for index = first_change, #args, 3 do
    local op, name, value = args[index], args[index + 1], args[index + 2]
    if op == 'S' then redis.call('SET', name, value)
    elseif op == 'R' then
      -- The challenge leaves the partition's hash for a key of its own (the user, and the request_id), and
      -- the request_id's key holds its record, both until the end of its window. A record whose window has
      -- passed is not written, so that a request_id used again since keeps its new holder.
      local at, request, record = string.match(value, '^(%d+)|([^|]*)|(.*)$')
      if not now then
        local time = redis.call('TIME')
        now = time[1] .. string.format('%03d', math.floor(tonumber(time[2]) / 1000))
      end
      if less(now, at) then
        local tag = string.sub(keys[1], 5, 8)
        redis.call('SET', challenge_key(tag, name), request .. '|' .. args[3], 'PXAT', at)
        redis.call('SET', request_key(args[5], request), tag .. '|' .. args[3] .. '\n' .. record, 'PXAT', at)
      end
      redis.call('HDEL', keys[4], name)
    elseif op == 'E' then
      local at, held = string.match(value, '^(%d+)|(.*)$')
      redis.call('SET', name, held, 'PXAT', at)
    elseif op == 'D' then redis.call('DEL', name)
    elseif op == 'H' then redis.call('HSET', keys[4], name, value)
    elseif op == 'h' then redis.call('HDEL', keys[4], name)
    elseif op == 'O' then enqueue(string.sub(keys[5], 5, 8), name, value)
    else return redis.error_reply('ERR unknown index change ' .. op) end
  end
  local here = {}
  for index = 8, first_change - 1, 3 do
    here[#here + 1] = route(args[6], args[index], args[index + 1], args[index + 2])
  end
  return { 1, table.concat(here) }
end

-- ARGV: the instance, the route's lifetime (ms), then device ids. Routes their deliveries to the instance.
local function route_streams(keys, args)
  for index = 3, #args do redis.call('SET', 'ap:route:' .. args[index], args[1], 'PX', args[2]) end
  return #args - 2
end

-- ARGV: the instance, a device id. Ends the device's route if it is still the instance's.
local function unroute_stream(keys, args)
  local key = 'ap:route:' .. args[2]
  if redis.call('GET', key) == args[1] then redis.call('DEL', key) end
  return 1
end

-- ARGV: the instance, a challenge id, how long the poll waits (ms). Its end is published to the instance.
local function watch(keys, args)
  local key = 'ap:lp:' .. args[2]
  redis.call('SADD', key, args[1])
  if redis.call('PTTL', key) < tonumber(args[3]) then redis.call('PEXPIRE', key, args[3]) end
  return 1
end

-- ARGV: changes as quintuples: op, challenge id, value, partition tag, tenant — 'd' delivered, 'r' retry
-- (value "<attempts>|<next>"), 'x' dead letter (value: the dead letter). A callback another instance
-- finished meanwhile is left alone. → how many changed.
local function outbox(keys, args)
  for index = 1, #args, 5 do
    local op = args[index]
    if op ~= 'd' and op ~= 'r' and op ~= 'x' then return redis.error_reply('ERR unknown outbox change ' .. op) end
  end
  local changed = 0
  for index = 1, #args, 5 do
    local op, id, value, tag, tenant = args[index], args[index + 1], args[index + 2], args[index + 3],
      args[index + 4]
    local out, outdue = outbox_key(tag), outbox_due_key(tag)
    if op == 'r' then
      local callback = redis.call('HGET', out, id)
      if callback then
        changed = changed + 1
        redis.call('HSET', out, id, value .. '|' .. string.match(callback, '^%d+|%d+|(.*)$'))
        redis.call('ZADD', outdue, string.match(value, '|(%d+)$'), id)
      end
    elseif redis.call('HDEL', out, id) == 1 then
      changed = changed + 1
      redis.call('ZREM', outdue, id)
      if op == 'x' then
        redis.call('HSET', 'ap:dl:' .. tenant, id, value)
        redis.call('ZADD', 'ap:dlt:' .. tenant, string.match(value, '^%d+|(%d+)|'), id)
      end
    end
  end
  return changed
end

-- Sorted set entries of `key` scored at most `now` and after the cursor (score, then id), at most `limit`.
local function due_after(key, now, limit, cursor_score, cursor_id)
  local found, offset = {}, 0
  local low = cursor_score or '-inf'
  while #found < limit do
    local page = redis.call('ZRANGEBYSCORE', key, low, now, 'WITHSCORES', 'LIMIT', offset, limit)
    if #page == 0 then break end
    for index = 1, #page, 2 do
      local score = tonumber(page[index + 1])
      if not cursor_score or score > cursor_score or page[index] > cursor_id then
        found[#found + 1] = { score, page[index] }
      end
    end
    offset = offset + #page / 2
  end
  return found
end

-- ARGV: now, limit, cursor score ('' for none), cursor id, then partition tags.
-- → { next due time after now or '', then tag, challenge id, callback for each, in (due, id) order }.
local function due_callbacks(keys, args)
  local now, limit = tonumber(args[1]), tonumber(args[2])
  local cursor_score = args[3] ~= '' and tonumber(args[3]) or nil
  local entries, next_due = {}, nil
  local function consider(time)
    if not next_due or time < next_due then next_due = time end
  end
  local tags, dues = {}, {}
  for index = 5, #args do
    tags[#tags + 1] = args[index]
    dues[#dues + 1] = outbox_due_key(args[index])
  end
  -- One command tells whether any of them holds a callback: none do, mostly, when the verifiers keep up.
  if #dues == 0 or redis.call('EXISTS', unpack(dues)) == 0 then return { '' } end
  for index, due in ipairs(dues) do
    local tag = tags[index]
    -- The earliest entry tells whether anything is due: most partitions hold nothing or nothing due yet.
    local first = redis.call('ZRANGE', due, '0', '0', 'WITHSCORES')
    if #first > 0 then
      if tonumber(first[2]) > now then
        consider(tonumber(first[2]))
      else
        for _, entry in ipairs(due_after(due, now, limit, cursor_score, args[4])) do
          entries[#entries + 1] = { entry[1], entry[2], tag }
        end
        local later = redis.call('ZRANGEBYSCORE', due, '(' .. args[1], '+inf', 'WITHSCORES', 'LIMIT', '0', '1')
        if #later > 0 then consider(tonumber(later[2])) end
      end
    end
  end
  table.sort(entries, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  local reply = { next_due and string.format('%d', next_due) or '' }
  for index = 1, math.min(limit, #entries) do
    local entry = entries[index]
    reply[#reply + 1] = entry[3]
    reply[#reply + 1] = entry[2]
    reply[#reply + 1] = redis.call('HGET', outbox_key(entry[3]), entry[2])
  end
  return reply
end

-- KEYS: the tenant's dead letters, their order. ARGV: limit. → { challenge id, dead letter, … } newest first.
local function dead_letters(keys, args)
  local reply = {}
  for _, id in ipairs(redis.call('ZREVRANGE', keys[2], 0, tonumber(args[1]) - 1)) do
    reply[#reply + 1] = id
    reply[#reply + 1] = redis.call('HGET', keys[1], id)
  end
  return reply
end

-- KEYS: the tenant's dead letters, their order. ARGV: now, challenge id ('' for every one).
-- → how many went back into their partitions' outboxes, due now with no attempt made.
local function redrive(keys, args)
  local ids = args[2] == '' and redis.call('ZRANGE', keys[2], 0, -1) or { args[2] }
  local requeued = 0
  for _, id in ipairs(ids) do
    local letter = redis.call('HGET', keys[1], id)
    if letter then
      local ended, tag, length, rest = string.match(letter, '^%d+|%d+|%d+|(%d+)|(%d+)|(%d+)|(.*)$')
      local tenant = string.sub(keys[1], 7)
      local callback = '0|' .. args[1] .. '|' .. ended .. '|' .. tenant .. '|' .. string.sub(rest, length + 1)
      enqueue(tag, id, callback)
      redis.call('HDEL', keys[1], id)
      redis.call('ZREM', keys[2], id)
      requeued = requeued + 1
    end
  end
  return requeued
end

-- ARGV: now, limit, then partition tags (none: every partition). → the user fields due, at most `limit` a
-- partition. Reads only the partitions that ap:dueparts says may have something due, and sets their entries
-- there to their earliest deadlines again.
local function due_users(keys, args)
  local asked = nil
  if #args > 2 then
    asked = {}
    for index = 3, #args do asked[args[index]] = true end
  end
  local reply = {}
  for _, tag in ipairs(redis.call('ZRANGEBYSCORE', 'ap:dueparts', '-inf', args[1])) do
    if not asked or asked[tag] then
      local key = 'ap:{' .. tag .. '}:due'
      for _, field in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', args[1], 'LIMIT', 0, args[2])) do
        reply[#reply + 1] = field
      end
      index_earliest(tag, key)
    end
  end
  return reply
end

-- Every partition's outbox hash, named on first use (a library that loads may not use `string` yet).
local outboxes = nil
local function every_outbox()
  if not outboxes then
    outboxes = {}
    for partition = 0, PARTITIONS - 1 do
      outboxes[partition + 1] = outbox_key(string.format('%04d', partition))
    end
  end
  return outboxes
end

-- → { name, value, … }: pending, queue (the sum of every q:<tenant>), out (the callbacks in every partition's
-- outbox) and each q:<tenant>.
local function gauges(keys, args)
  local sums, names = { pending = 0, queue = 0, out = 0 }, { 'pending', 'queue', 'out' }
  local function add_queue(tenant, count)
    local name = 'q:' .. tenant
    if not sums[name] then
      sums[name] = 0
      names[#names + 1] = name
    end
    sums[name] = sums[name] + count
    sums.queue = sums.queue + count
  end
  local fields = redis.call('HGETALL', 'ap:gauges')
  for at = 1, #fields, 2 do
    local name, value = fields[at], fields[at + 1]
    local kind, tenant = string.sub(name, 1, 2), string.sub(name, 3)
    if kind == 'c:' then
      local pending, queue = split_counts(value)
      sums.pending = sums.pending + pending
      add_queue(tenant, queue)
    elseif name == 'pending' then
      sums.pending = sums.pending + tonumber(value)
    elseif kind == 'q:' then
      add_queue(tenant, tonumber(value))
    end
  end
  if redis.call('EXISTS', unpack(every_outbox())) > 0 then
    for _, partition_outbox in ipairs(every_outbox()) do sums.out = sums.out + redis.call('HLEN', partition_outbox) end
  end
  local reply = {}
  for _, name in ipairs(names) do
    reply[#reply + 1] = name
    reply[#reply + 1] = string.format('%d', sums[name])
  end
  return reply
end

-- The newest state format every live instance reads, given that `me` reads `reads`. Raised once each live
-- instance has said it reads a newer one, then never lowered: an instance of a release before, which says
-- nothing, refuses to start beside this library.
local function agreed_format(me, reads, live)
  local agreed = tonumber(redis.call('HGET', 'ap:membership', 'format')) or 2
  if tonumber(reads) <= agreed then return agreed end
  if redis.call('HGET', 'ap:formats', me) ~= reads then redis.call('HSET', 'ap:formats', me, reads) end
  local lowest = nil
  for _, format in ipairs(redis.call('HMGET', 'ap:formats', unpack(live))) do
    local read = tonumber(format) or agreed
    if not lowest or read < lowest then lowest = read end
  end
  if lowest > agreed then
    agreed = lowest
    redis.call('HSET', 'ap:membership', 'format', tostring(agreed))
    redis.call('DEL', 'ap:formats')
  end
  return agreed
end

-- ARGV: the instance, how long an instance counts as alive (ms), and the newest state format it reads (which
-- the release before does not send). Says the instance is alive and reads who else is: → { ms since the
-- live set last changed, the live instances by name, the live set before that change, the live instances
-- that said they are alive since the change (and so have seen it) }, and to a caller that sent its format,
-- the newest format every live instance reads. Time is Redis's, so that instances whose clocks differ agree.
local function members(keys, args)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('ZADD', 'ap:instances', now, args[1])
  redis.call('ZREMRANGEBYSCORE', 'ap:instances', '-inf', now - tonumber(args[2]))
  local scored = redis.call('ZRANGE', 'ap:instances', 0, -1, 'WITHSCORES')
  local live = {}
  for index = 1, #scored, 2 do live[#live + 1] = scored[index] end
  table.sort(live)
  local joined = table.concat(live, ' ')
  local stored = redis.call('HMGET', 'ap:membership', 'live', 'since', 'before')
  local since, before = tonumber(stored[2]), stored[3] or ''
  if stored[1] ~= joined or not since then
    since, before = now, stored[1] or ''
    redis.call('HSET', 'ap:membership', 'live', joined, 'since', since, 'before', before)
  end
  local previous, seen = {}, {}
  for name in string.gmatch(before, '%S+') do previous[#previous + 1] = name end
  for index = 1, #scored, 2 do
    if tonumber(scored[index + 1]) >= since then seen[#seen + 1] = scored[index] end
  end
  if not args[3] then return { now - since, live, previous, seen } end
  return { now - since, live, previous, seen, agreed_format(args[1], args[3], live) }
end

redis.register_function{ function_name = 'approvald_version', callback = function() return LIBRARY_VERSION end,
  flags = { 'no-writes' } }
redis.register_function{ function_name = 'approvald_load_challenge', callback = load_challenge,
  flags = { 'no-writes' } }
redis.register_function{ function_name = 'approvald_load_device', callback = load_device,
  flags = { 'no-writes' } }
redis.register_function('approvald_commit', commit)
redis.register_function('approvald_outbox', outbox)
redis.register_function('approvald_route_streams', route_streams)
redis.register_function('approvald_unroute_stream', unroute_stream)
redis.register_function('approvald_watch', watch)
redis.register_function('approvald_members', members)
redis.register_function('approvald_redrive', redrive)
redis.register_function('approvald_due_users', due_users)
local function read_only(name, callback)
  redis.register_function{ function_name = name, callback = callback, flags = { 'no-writes' } }
end
read_only('approvald_due_callbacks', due_callbacks)
read_only('approvald_dead_letters', dead_letters)
read_only('approvald_gauges', gauges)
