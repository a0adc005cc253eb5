"""Lua scripts of `RedisStore`, one constant per script.

Every per-thread script gets the thread's key base ``<prefix>{<tenant>,<thread>}`` as
``KEYS[1]`` (a name that is never written) and derives the names of the thread's keys
from it, so they all carry the same hash tag and live in one cluster slot:

=============================  ======  ============================================
key                            type    content
=============================  ======  ============================================
``T:r:<lp ns><lp kind><key>``  hash    one record: body and routing fields
``T:m``                        hash    registry: ``ns\\0kind\\0key`` -> routing
                                       (``sort\\0group\\0status\\0has-lease``)
``T:k:<kind>``                 zset    lex members ``sort\\0ns\\0key``
``T:x:<lp kind><ns>``          zset    lex members ``sort\\0key`` (ns not empty)
``T:g:<group>``                zset    lex members ``sort\\0ns\\0kind\\0key``
``T:c:<lp kind><status>``      zset    ``sort\\0ns\\0key`` (claims; status not empty)
``T:L:<kind>``                 zset    score lease_until, members ``sort\\0ns\\0key``
``T:e``                        zset    score expires_at, members ``ns\\0kind\\0key``
``T:q``                        hash    recent claim operation ids -> claimed member
``T:life``                     string  tenant's lifetime (only under the tenant's key
                                       base ``P{<tenant>,}``): epoch ms or ``inf``
=============================  ======  ============================================

Listings (see `checkpointers.stores._redis_keys`): a lex set of members (score 0, paged
by name) and next to it an expiry set scoring each member by the epoch ms it lives
until (``+inf``: never; ``-inf``: follows the tenant).

``lp(s)`` is ``<byte length>:<s>``, so the parts of a name cannot run into each other;
record fields never hold NUL, so NUL-joined members are unambiguous and sort like the
tuples they encode. Nothing a user supplies is formatted into a script: it arrives as
``ARGV``. Strings are compared byte by byte (`lt`), never with Lua's ``<`` (strcoll).

Expiry: a record's ``expires_at`` becomes PEXPIREAT on its hash. The other keys of a
thread live as long as its longest-lived record (none if one record has none): each
mutating script reads PTTL of ``T:m`` once, and only when the thread expires does it set
PEXPIREAT (to the max of the current and the new expiry, only ever extended) on the
keys it wrote; a thread that never expires costs no expiry work. The listing sets live
as long as their longest-lived member (in whole seconds, rounded up) and drop expired
members as they are written; the tenant's lifetime also keeps the tenant's own records
(the blind-index key, written without expiry in thread ``""``) alive, through
``T:life``. Members of a record that Redis expired are pruned when a script meets them,
through the registry, and by the sweep (``PRUNE``). Keys written before this layout keep
the lifetime they had. The helpers are in `checkpointers.stores._redis_prelude`.
"""

from __future__ import annotations

from checkpointers.stores._redis_prelude import PRELUDE as _PRELUDE

__all__ = [
    "CLAIM",
    "DELETE",
    "DELETE_THREAD",
    "FIND",
    "FOLLOW",
    "GET",
    "LIST",
    "PRUNE",
    "SCRIPTS",
    "TOUCH",
    "WRITE",
]


#: Write records of one thread. ARGV: now, mode (put|cas|absent|copy), expected version,
#: count, operation id (a retry of an applied operation returns its result), then per
#: record: ns, kind, key, body, sort, group, status, tokens, expires_at,
#: lease_until, version, updated_at ("" for none; a version and updated_at given are
#: kept as they are, for replication; mode copy leaves a record whose stored version is
#: higher untouched), then "f" when the records are the tenant's own (they live as long
#: as the tenant, see `live_until`) or "". Records are applied in turn. Returns
#: {1, version of each record} (false where one was left as it was), or
#: {0, current version} for a failed cas. A retry of an applied operation answers each
#: record's version as the operation left it (false for a record it skipped, or that a
#: later write replaced since).
#:
#: On a single server (not a cluster) the listing step rides along: with KEYS[2..6] (the
#: tenants set and its expiry set, the tenant's threads set and its expiry set, the
#: tenant's key base), two more ARGV (tenant, thread) list the thread as TOUCH and
#: FOLLOW would, in the same script, and only when the thread is new or its lifetime grew.
WRITE = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[1])
local mode, n = ARGV[2], tonumber(ARGV[4])
local tail = 5 + n * 12
local own = ARGV[tail + 1] == 'f'
local function ident(i)
  local o = 5 + i * 12
  return ARGV[o + 1] .. '\0' .. ARGV[o + 2] .. '\0' .. ARGV[o + 3]
end
-- The first record's version and expiry serve the retry check, cas and its own write.
local first = redis.call('HMGET', rkey(ARGV[6], ARGV[7], ARGV[8]), 'v', 'e', 'o')
if ARGV[5] ~= '' and first[3] == ARGV[5] then
  local left, seen, out = {}, {}, {1}
  for i = 0, n - 1 do left[ident(i)] = (left[ident(i)] or 0) + 1 end
  for i = 0, n - 1 do
    local o, id = 5 + i * 12, ident(i)
    local r = redis.call('HMGET', rkey(ARGV[o + 1], ARGV[o + 2], ARGV[o + 3]), 'o', 'v')
    left[id] = left[id] - 1
    local v = false
    if r[1] == ARGV[5] and not (mode == 'absent' and seen[id]) then
      v = tonumber(r[2])
      if mode ~= 'absent' then v = v - left[id] end
    end
    seen[id] = true
    out[#out + 1] = v
  end
  return out
end
if mode == 'cas' then
  local cur = current(nil, now, first)
  if cur ~= tonumber(ARGV[3]) then return {0, cur} end
end
local before = redis.call('PTTL', T .. ':m')
-- Registry entries without a record hash exist only for records Redis expired, whose
-- ids T:e holds: without T:e, a record that is absent has no index entries to remove.
local stale = nil
local out, latest = {1}, -1
for i = 0, n - 1 do
  local o = 5 + i * 12
  local ns, kind, key = ARGV[o + 1], ARGV[o + 2], ARGV[o + 3]
  local rk = rkey(ns, kind, key)
  local read = nil
  if i == 0 then read = first end
  local cur, stored, olde = current(rk, now, read)
  local keep = mode == 'absent' and cur > 0
  -- A copy never goes back in version: a stored higher version stays.
  if mode == 'copy' and stored > tonumber(ARGV[o + 11]) then keep = true end
  if not keep then
    local v = stored + 1
    if ARGV[o + 11] ~= '' then v = tonumber(ARGV[o + 11]) end
    local u = ARGV[o + 12]
    if u == '' then u = ARGV[1] end
    local e, lease = ARGV[o + 9], ARGV[o + 10]
    if stored == 0 and stale == nil then
      stale = before ~= -2 and redis.call('EXISTS', T .. ':e') == 1
    end
    if stored > 0 or stale then unindex(ns .. '\0' .. kind .. '\0' .. key) end
    local ms = exp_ms(e)
    if ms ~= 0 and ms <= now_ms() then
      if stored > 0 then redis.call('DEL', rk) end
    else
      local d = ''
      if e ~= '' then d = string.format('%.17g', tonumber(e) - now) end
      -- Every field is written, so the hash needs no DEL first; only its expiry changes.
      redis.call('HSET', rk, 'ns', ns, 'kd', kind, 'k', key, 'b', ARGV[o + 4],
        's', ARGV[o + 5], 'g', ARGV[o + 6], 'st', ARGV[o + 7], 'tk', ARGV[o + 8],
        'e', e, 'l', lease, 'v', tostring(v), 'u', u, 'd', d, 'o', ARGV[5])
      if ms ~= 0 then redis.call('PEXPIREAT', rk, fmt(ms))
      elseif olde ~= '' then redis.call('PERSIST', rk) end
      index(ns, kind, key, ARGV[o + 5], ARGV[o + 6], ARGV[o + 7], lease, e)
      if ms == 0 or latest == 0 then latest = 0 elseif ms > latest then latest = ms end
    end
    out[#out + 1] = v
  else
    out[#out + 1] = false
  end
end
local life = nil
if latest >= 0 then life = settle(before, latest) else flush() end
if own then follow_tenant(T) end
if #KEYS == 6 then
  local tenant, thread = ARGV[tail + 2], ARGV[tail + 3]
  if own then
    list(KEYS[4], KEYS[5], thread, -1)
    list(KEYS[2], KEYS[3], tenant, -1)
  elseif life then
    local grown = list(KEYS[4], KEYS[5], thread, coarse(life))
    if grown then
      list(KEYS[2], KEYS[3], tenant, grown)
      live_until(KEYS[6], grown)
    end
  end
end
return out
"""
)

#: Read records of one thread. ARGV: now, live-only (1|""), refresh (1|""), count, then
#: ns, kind, key per record. Returns one row or false per record. With refresh, a live
#: record written with an expiry gets it again from now (record, indexes).
GET = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[1])
local out = {}
if ARGV[3] ~= '1' then
  -- No refresh: the fields in reply order, straight from HMGET (no table building).
  for i = 0, tonumber(ARGV[4]) - 1 do
    local r = redis.call('HMGET', rkey(ARGV[5 + i * 3], ARGV[6 + i * 3], ARGV[7 + i * 3]),
      'ns', 'kd', 'k', 's', 'g', 'st', 'tk', 'e', 'l', 'v', 'u', 'b')
    if r[1] and not (ARGV[2] == '1' and r[8] ~= '' and tonumber(r[8]) <= now) then
      out[#out + 1] = table.concat(r, '\0')
    else
      out[#out + 1] = false
    end
  end
  return out
end
local before, latest = redis.call('PTTL', T .. ':m'), -1
for i = 0, tonumber(ARGV[4]) - 1 do
  local ns, kind, key = ARGV[5 + i * 3], ARGV[6 + i * 3], ARGV[7 + i * 3]
  local h = load(ns, kind, key)
  if h and ARGV[2] == '1' and not live(h, now) then h = nil end
  if h and ARGV[3] == '1' and h.d ~= '' then
    local e = string.format('%.17g', now + tonumber(h.d))
    if tonumber(e) > tonumber(h.e) then
      unindex(ns .. '\0' .. kind .. '\0' .. key)
      h.e = e
      local rk = rkey(ns, kind, key)
      redis.call('HSET', rk, 'e', e)
      redis.call('PEXPIREAT', rk, fmt(exp_ms(e)))
      index(ns, kind, key, h.s, h.g, h.st, h.l, e)
      if exp_ms(e) > latest then latest = exp_ms(e) end
    end
  end
  if h then out[#out + 1] = reply(h) else out[#out + 1] = false end
end
if latest > 0 then settle(before, latest) end
return out
"""
)

#: Records of one thread matching a query. ARGV: now, then kind, namespace, group, before,
#: after (each "" for none or "=" + value), limit (-1 none), descending (1|""), number of
#: statuses (-1 none) and the statuses, number of tokens and the tokens. Rows come in
#: index order; without kind and group, every record is checked and the limit is not
#: applied (the caller sorts and cuts).
FIND = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[1])
local kind, ns, group = opt(ARGV[2]), opt(ARGV[3]), opt(ARGV[4])
local before, after = opt(ARGV[5]), opt(ARGV[6])
local limit, desc = tonumber(ARGV[7]), ARGV[8] == '1'
local i = 9
local nst, statuses = tonumber(ARGV[i]), nil
if nst >= 0 then
  statuses = {}
  for j = 1, nst do statuses[ARGV[i + j]] = true end
  i = i + nst
end
i = i + 1
local tokens = {}
for j = 1, tonumber(ARGV[i]) do tokens[j] = ' ' .. ARGV[i + j] .. ' ' end

local out, dead = {}, {}
local function check(ns_, kind_, key_)
  local h = load(ns_, kind_, key_)
  if not h then dead[#dead + 1] = ns_ .. '\0' .. kind_ .. '\0' .. key_; return end
  if not live(h, now) then return end
  if (kind and h.kd ~= kind) or (ns and h.ns ~= ns) or (group and h.g ~= group) then return end
  if statuses and not statuses[h.st] then return end
  for _, t in ipairs(tokens) do
    if not string.find(h.tk, t, 1, true) then return end
  end
  if (before and not lt(h.s, before)) or (after and not lt(after, h.s)) then return end
  out[#out + 1] = reply(h)
end

-- Records of the empty namespace have no kind-and-namespace index: the kind index has
-- them (its members name the namespace, so others are skipped without a read).
local idx, shape
if group then idx, shape = T .. ':g:' .. group, 'g'
elseif kind and ns and ns ~= '' then idx, shape = T .. ':x:' .. lp(kind) .. ns, 'x'
elseif kind then idx, shape = T .. ':k:' .. kind, 'k' end
if idx then
  local lo, hi = '-', '+'
  if after then lo = '[' .. after .. '\1' end
  if before then hi = '(' .. before end
  local off, step = 0, 64
  while limit < 0 or #out < limit do
    local batch
    if desc then batch = redis.call('ZREVRANGEBYLEX', idx, hi, lo, 'LIMIT', off, step)
    else batch = redis.call('ZRANGEBYLEX', idx, lo, hi, 'LIMIT', off, step) end
    for _, m in ipairs(batch) do
      local p = split(m)
      if shape == 'g' then check(p[2], p[3], p[4])
      elseif shape == 'x' then check(ns, kind, p[2])
      elseif not ns or p[2] == ns then check(p[2], kind, p[3]) end
      if limit >= 0 and #out >= limit then break end
    end
    if #batch < step then break end
    off = off + step
  end
else
  for _, id in ipairs(redis.call('HKEYS', T .. ':m')) do
    local p = split(id)
    check(p[1], p[2], p[3])
  end
end
for _, id in ipairs(dead) do unindex(id) end
return out
"""
)

#: Claim the oldest claimable record of one thread and kind. ARGV: now, kind, to_status,
#: lease_until (""), reclaim expired leases (1|""), operation id, number of statuses,
#: statuses. Returns the claimed row or false. ``T:q`` maps recent operation ids to what
#: they claimed (kept a minute at most), so a retried claim returns its record instead
#: of claiming a second one.
CLAIM = (
    _PRELUDE
    + r"""
local now, kind, op = tonumber(ARGV[1]), ARGV[2], ARGV[6]
local q = T .. ':q'
local prior = redis.call('HGET', q, op)
if prior then
  local p = split(prior)
  local h = load(p[2], kind, p[3])
  if h then return reply(h) end
  return false
end
local best, bh, dead = nil, nil, {}
-- `status`: the status the record must have (nil: any).
local function consider(sk, status)
  if best and not lt(sk, best) then return 'later' end
  local p = split(sk)
  local h = load(p[2], kind, p[3])
  if not h then dead[#dead + 1] = p[2] .. '\0' .. kind .. '\0' .. p[3]; return nil end
  if not live(h, now) or (status and h.st ~= status) then return nil end
  best, bh = sk, h
  return 'taken'
end
for s = 1, tonumber(ARGV[7]) do
  -- Records with the empty status have no claim index: the kind index has them.
  local status = ARGV[7 + s]
  local idx = T .. ':c:' .. lp(kind) .. status
  if status == '' then idx = T .. ':k:' .. kind end
  local off, done = 0, false
  while not done do
    local batch = redis.call('ZRANGEBYLEX', idx, '-', '+', 'LIMIT', off, 16)
    for _, sk in ipairs(batch) do
      if consider(sk, status) then done = true; break end
    end
    if #batch < 16 then done = true end
    off = off + 16
  end
end
if ARGV[5] == '1' then
  for _, sk in ipairs(redis.call('ZRANGEBYSCORE', T .. ':L:' .. kind, '-inf', '(' .. ARGV[1])) do
    consider(sk)
  end
end
for _, id in ipairs(dead) do unindex(id) end
if not best then return false end
local p = split(best)
local ns, key = p[2], p[3]
local before = redis.call('PTTL', T .. ':m')
unindex(ns .. '\0' .. kind .. '\0' .. key)
bh.st, bh.l, bh.v, bh.u = ARGV[3], ARGV[4], tostring(tonumber(bh.v) + 1), ARGV[1]
redis.call('HSET', rkey(ns, kind, key), 'st', bh.st, 'l', bh.l, 'v', bh.v, 'u', bh.u)
index(ns, kind, key, bh.s, bh.g, bh.st, bh.l, bh.e)
settle(before, exp_ms(bh.e))
if redis.call('HLEN', q) >= 1000 then redis.call('DEL', q) end
redis.call('HSET', q, op, best)
local left = redis.call('PTTL', T .. ':m')
if left < 0 or left > 60000 then left = 60000 end
redis.call('PEXPIRE', q, left)
return reply(bh)
"""
)

#: Delete records of one thread. ARGV: now, count, then ns, kind, key per record.
#: Returns how many were live.
DELETE = (
    _PRELUDE
    + r"""
local now, count = tonumber(ARGV[1]), 0
for i = 0, tonumber(ARGV[2]) - 1 do
  local ns, kind, key = ARGV[3 + i * 3], ARGV[4 + i * 3], ARGV[5 + i * 3]
  local rk = rkey(ns, kind, key)
  if current(rk, now) > 0 then count = count + 1 end
  redis.call('DEL', rk)
  unindex(ns .. '\0' .. kind .. '\0' .. key)
end
return count
"""
)

#: Delete every record of one thread with its indexes. Returns how many records existed.
DELETE_THREAD = (
    _PRELUDE
    + r"""
local count = 0
for _, id in ipairs(redis.call('HKEYS', T .. ':m')) do
  local p = split(id)
  count = count + redis.call('DEL', rkey(p[1], p[2], p[3]))
  unindex(id)
end
redis.call('DEL', T .. ':m', T .. ':e', T .. ':q', T .. ':life')
return count
"""
)

#: Delete up to ARGV[2] records of one thread whose expires_at <= ARGV[1] (and the index
#: entries of those Redis already expired). Returns {records deleted, records left}.
PRUNE = (
    _PRELUDE
    + r"""
local count = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', T .. ':e', '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
  local p = split(id)
  count = count + redis.call('DEL', rkey(p[1], p[2], p[3]))
  unindex(id)
end
return {count, redis.call('HLEN', T .. ':m')}
"""
)

#: Identities (``ns\0kind\0key``) of every record of one thread.
LIST = (
    _PRELUDE
    + r"""
return redis.call('HKEYS', T .. ':m')
"""
)

#: List ARGV[1] in the lex set KEYS[1] (tenants, or threads of a tenant) and its expiry
#: set KEYS[2] until ARGV[2] (epoch seconds; "" for ever; "f" following the tenant), see
#: `list`. Returns the set's new lifetime in epoch ms if it grew (0: never), else false.
TOUCH = (
    _PRELUDE
    + r"""
local e = ARGV[2]
local ms = -1
if e ~= 'f' then ms = coarse(exp_ms(e)) end
local grown = list(KEYS[1], KEYS[2], ARGV[1], ms)
if grown then return grown end
return false
"""
)

#: Keep the tenant's own records (under the tenant's key base KEYS[1]) alive at least
#: until ARGV[1] (epoch seconds, "" for ever), see `live_until`.
FOLLOW = (
    _PRELUDE
    + r"""
live_until(T, coarse(exp_ms(ARGV[1])))
return 1
"""
)

SCRIPTS: dict[str, str] = {
    "claim": CLAIM,
    "delete": DELETE,
    "delete_thread": DELETE_THREAD,
    "find": FIND,
    "follow": FOLLOW,
    "get": GET,
    "list": LIST,
    "prune": PRUNE,
    "touch": TOUCH,
    "write": WRITE,
}
