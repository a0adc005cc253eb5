"""The Lua helpers every script of `RedisStore` starts with (private).

Key names of a thread (``T`` is ``KEYS[1]``, see `checkpointers.stores._redis_lua`),
reading and writing the indexes, and expiry: `settle` gives the keys a script wrote the
thread's lifetime (no work at all for a thread that never expires), `list` keeps a
listing and its expiry set, `live_until` and `follow_tenant` keep the tenant's own
records (its blind-index key) alive as long as the tenant.
"""

from __future__ import annotations

__all__ = ["PRELUDE"]

PRELUDE = r"""
local T = KEYS[1]
local NOW_MS = nil
-- Server time in epoch ms, read once and only when a script needs it.
local function now_ms()
  if not NOW_MS then
    local tm = redis.call('TIME')
    NOW_MS = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
  end
  return NOW_MS
end

local function lp(s) return #s .. ':' .. s end
local function rkey(ns, kind, key) return T .. ':r:' .. lp(ns) .. lp(kind) .. key end
local function fmt(ms) return string.format('%d', ms) end

local function split(s)
  local out, i = {}, 1
  while true do
    local j = string.find(s, '\0', i, true)
    if not j then out[#out + 1] = string.sub(s, i); return out end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

local function lt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function opt(s) if s == '' then return nil end return string.sub(s, 2) end
local function exp_ms(e) if e == '' then return 0 end return math.floor(tonumber(e) * 1000) end
-- Lifetimes of listings and tenants are counted in whole seconds (rounded up): they grow,
-- and cost a listing update, at most once a second per thread, not at every write.
local function coarse(ms) if ms <= 0 then return ms end return math.ceil(ms / 1000) * 1000 end

-- The index keys under key base `b` of the record `id` with registry entry `v`.
local function keys_of(b, id, v)
  local p, r = split(id), split(v)
  local out = {b .. ':k:' .. p[2], b .. ':x:' .. lp(p[2]) .. p[1], b .. ':c:' .. lp(p[2]) .. r[3]}
  if r[2] ~= '' then out[#out + 1] = b .. ':g:' .. r[2] end
  if r[4] == '1' then out[#out + 1] = b .. ':L:' .. p[2] end
  return out
end

-- Index additions are queued and sent at the end, one ZADD per key and one HSET of the
-- registry for all records of the script (`flush`); `TOUCHED` names the keys added to.
local ZQ, ZN, MQ, PEND, TOUCHED = {}, {}, {}, {}, {}
local function flush()
  for _, k in ipairs(ZN) do redis.call('ZADD', k, unpack(ZQ[k])) end
  if #MQ > 0 then redis.call('HSET', T .. ':m', unpack(MQ)) end
  ZQ, ZN, MQ, PEND = {}, {}, {}, {}
end
local function zq(key, score, member)
  local q = ZQ[key]
  if not q then q = {}; ZQ[key] = q; ZN[#ZN + 1] = key; TOUCHED[key] = true end
  q[#q + 1] = score
  q[#q + 1] = member
  if #q >= 2000 then flush() end
end

local function index(ns, kind, key, sort, group, status, lease, e)
  local id = ns .. '\0' .. kind .. '\0' .. key
  local sk = sort .. '\0' .. ns .. '\0' .. key
  zq(T .. ':k:' .. kind, 0, sk)
  -- The empty namespace and the empty status need no index of their own: FIND and
  -- CLAIM read them from the kind index (entries of the old layout stay harmless).
  if ns ~= '' then zq(T .. ':x:' .. lp(kind) .. ns, 0, sort .. '\0' .. key) end
  if status ~= '' then zq(T .. ':c:' .. lp(kind) .. status, 0, sk) end
  if group ~= '' then zq(T .. ':g:' .. group, 0, sort .. '\0' .. id) end
  if lease ~= '' then zq(T .. ':L:' .. kind, lease, sk) end
  if e ~= '' then zq(T .. ':e', e, id) end
  local flag = ''
  if lease ~= '' then flag = '1' end
  MQ[#MQ + 1] = id
  MQ[#MQ + 1] = sort .. '\0' .. group .. '\0' .. status .. '\0' .. flag
  PEND[id] = true
  if #MQ >= 2000 then flush() end
end

local function unindex(id)
  if PEND[id] then flush() end
  local m = T .. ':m'
  local v = redis.call('HGET', m, id)
  if not v then return end
  local p, r = split(id), split(v)
  local ns, kind, key, sort, group, status = p[1], p[2], p[3], r[1], r[2], r[3]
  local sk = sort .. '\0' .. ns .. '\0' .. key
  redis.call('ZREM', T .. ':k:' .. kind, sk)
  redis.call('ZREM', T .. ':x:' .. lp(kind) .. ns, sort .. '\0' .. key)
  redis.call('ZREM', T .. ':c:' .. lp(kind) .. status, sk)
  if group ~= '' then redis.call('ZREM', T .. ':g:' .. group, sort .. '\0' .. id) end
  if r[4] == '1' then redis.call('ZREM', T .. ':L:' .. kind, sk) end
  redis.call('ZREM', T .. ':e', id)
  redis.call('HDEL', m, id)
end

-- Give every key of the thread under `b` (registry, indexes, expiry set; with `records`
-- also the record hashes and ``b:life``) the lifetime `ms` (0: none).
local function set_life(b, ms, records)
  local m = b .. ':m'
  local flat = redis.call('HGETALL', m)
  local seen = {[m] = true, [b .. ':e'] = true}
  if records then seen[b .. ':life'] = true end
  for i = 1, #flat, 2 do
    for _, k in ipairs(keys_of(b, flat[i], flat[i + 1])) do seen[k] = true end
    if records then
      local p = split(flat[i])
      seen[b .. ':r:' .. lp(p[1]) .. lp(p[2]) .. p[3]] = true
    end
  end
  for k in pairs(seen) do
    if ms == 0 then redis.call('PERSIST', k) else redis.call('PEXPIREAT', k, fmt(ms)) end
  end
end

-- Send the queued index additions and settle the thread's expiry. `before` is PTTL of
-- T:m before the script wrote (-2: a new thread, -1: a thread that never expires), `ms`
-- the latest expiry of what the script wrote (0: something never expires). Keys of a
-- thread that never expires get no expiry work. Returns the thread's lifetime when it
-- is new or changed (0: never), nil when it stayed as it was.
local function settle(before, ms)
  flush()
  if before == -1 then return nil end
  if ms == 0 then
    if before >= 0 then set_life(T, 0, false) end
    return 0
  end
  local at, changed = ms, true
  if before >= 0 and now_ms() + before >= ms then at, changed = now_ms() + before, false end
  TOUCHED[T .. ':m'] = true
  for k in pairs(TOUCHED) do redis.call('PEXPIREAT', k, fmt(at)) end
  if changed then return at end
  return nil
end

-- List `member` in the lex set `key` and the expiry set `ekey` until `ms` (0: never, -1:
-- follows the tenant), scores only ever raised; drop members that expired; both keys live
-- as long as their longest-lived member. Returns the new lifetime if it grew (0: never).
local function list(key, ekey, member, ms)
  local top = redis.call('ZREVRANGE', ekey, 0, 0, 'WITHSCORES')
  local old, legacy = nil, #top == 0
  if legacy then
    -- A lex set of the old layout (no expiry set yet): once, its members get the set's
    -- own lifetime as their score, the bound the old layout kept them by.
    local p = redis.call('PTTL', key)
    if p == -1 then old = 0 elseif p >= 0 then old = now_ms() + p end
    if old then
      local s = '+inf'
      if old > 0 then s = fmt(old) end
      local members = redis.call('ZRANGE', key, 0, -1)
      for i = 1, #members, 500 do
        local args = {}
        for j = i, math.min(i + 499, #members) do
          args[#args + 1] = s
          args[#args + 1] = members[j]
        end
        redis.call('ZADD', ekey, 'NX', unpack(args))
      end
    end
  elseif top[2] == 'inf' then old = 0
  elseif top[2] ~= '-inf' then old = tonumber(top[2]) end
  local score = '-inf'
  if ms == 0 then score = '+inf' elseif ms > 0 then score = fmt(ms) end
  redis.call('ZADD', key, 0, member)
  redis.call('ZADD', ekey, 'GT', score, member)
  local new = old
  if ms == 0 or old == 0 then new = 0
  elseif ms > 0 and (old == nil or ms > old) then new = ms end
  if ms > 0 then
    local gone = redis.call('ZRANGEBYSCORE', ekey, '(-inf', fmt(now_ms()), 'LIMIT', 0, 100)
    if #gone > 0 then
      redis.call('ZREM', key, unpack(gone))
      redis.call('ZREM', ekey, unpack(gone))
    end
  end
  if new ~= old then
    if new == 0 then
      redis.call('PERSIST', key)
      redis.call('PERSIST', ekey)
    else
      redis.call('PEXPIREAT', key, fmt(new))
      redis.call('PEXPIREAT', ekey, fmt(new))
    end
    return new
  end
  if legacy and old and old > 0 then redis.call('PEXPIREAT', ekey, fmt(old)) end
  return nil
end

-- Extend the tenant's lifetime, kept at ``b:life`` under the tenant's key base `b`, to
-- `ms` (0: never); when it grew, the keys of the tenant's own records follow it. A tenant
-- without own records has nothing to keep alive (one written later gets the lifetime
-- at the tenant's next write that extends it).
local function live_until(b, ms)
  if redis.call('EXISTS', b .. ':m') == 0 then return end
  local cur = redis.call('GET', b .. ':life')
  if cur == 'inf' or (cur and ms ~= 0 and tonumber(cur) >= ms) then return end
  if ms == 0 then redis.call('SET', b .. ':life', 'inf')
  else redis.call('SET', b .. ':life', fmt(ms)) end
  set_life(b, ms, true)
end

-- Records written under the tenant's key base follow the lifetime it already has.
local function follow_tenant(b)
  local cur = redis.call('GET', b .. ':life')
  if cur == 'inf' then set_life(b, 0, true) elseif cur then set_life(b, tonumber(cur), true) end
end

local function load(ns, kind, key)
  local flat = redis.call('HGETALL', rkey(ns, kind, key))
  if #flat == 0 then return nil end
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

local function live(h, now) return h.e == '' or tonumber(h.e) > now end

-- Row version of the record if it is live, as stored (0 when absent), and its expiry;
-- `r` is HMGET of its 'v', 'e' when the caller read them already.
local function current(rk, now, r)
  r = r or redis.call('HMGET', rk, 'v', 'e')
  if not r[1] then return 0, 0, '' end
  local stored = tonumber(r[1])
  if r[2] ~= '' and tonumber(r[2]) <= now then return 0, stored, r[2] end
  return stored, stored, r[2]
end

-- One string per record: the routing fields NUL-joined (they never hold NUL), then the
-- body, so a reply of n records costs the client n bulk strings to parse, not 12 n.
local function reply(h)
  return table.concat({h.ns, h.kd, h.k, h.s, h.g, h.st, h.tk, h.e, h.l, h.v, h.u, h.b}, '\0')
end
"""
