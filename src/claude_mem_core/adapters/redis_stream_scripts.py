"""The Lua scripts of :class:`~claude_mem_core.adapters.redis_stream_broker.JobStreamBroker`.

Each runs atomically in Redis, in one round trip: what must not be half done (a waiting
marker without its entry, a delayed message moved twice) is done in one script.
"""

# Immediate kick, one round trip: "already waiting" (0), "delayed, now made due" (2), or
# "new": marker set and the entry added to the lane's stream (1), all atomically.
KICK_NOW = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 0, ARGV[1])
  return 2
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('XADD', KEYS[3], '*', 'data', ARGV[3], 'tid', ARGV[1])
  return 1
end
return 0
"""

# Delayed kick: (re)schedule at Redis time + delay; a second kick restarts the delay.
KICK_LATER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SET', KEYS[3], '1', 'PX', tonumber(ARGV[2]) + tonumber(ARGV[4]))
return 1
"""

# Move due delayed messages into the lane's stream.
PROMOTE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local data = redis.call('HGET', KEYS[2], member)
  if data then
    redis.call('XADD', KEYS[3], '*', 'data', data, 'tid', member)
  end
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
end
return #due
"""

# A read without waiting, one round trip: acknowledge (and delete) what ARGV lists, read up
# to ARGV[3] new entries from the streams in KEYS order, and drop the waiting markers of
# what was read. ARGV: group, consumer, count, marker prefix, then per stream of KEYS the
# number of its entries to acknowledge followed by their ids. Returns, per stream read,
# {stream, entries} (entries may be empty: that lane had nothing).
READ = """
local group, consumer, want, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local at = 5
for k = 1, #KEYS do
  local n = tonumber(ARGV[at])
  at = at + 1
  if n > 0 then
    local ids = {}
    for j = 1, n do
      ids[j] = ARGV[at]
      at = at + 1
    end
    redis.call('XACK', KEYS[k], group, unpack(ids))
    redis.call('XDEL', KEYS[k], unpack(ids))
  end
end
local out = {}
for k = 1, #KEYS do
  if want <= 0 then
    break
  end
  local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want,
    'STREAMS', KEYS[k], '>')
  local entries = {}
  if got then
    entries = got[1][2]
    for _, entry in ipairs(entries) do
      local fields = entry[2]
      for f = 1, #fields, 2 do
        if fields[f] == 'tid' then
          redis.call('DEL', prefix .. fields[f + 1])
        end
      end
    end
  end
  out[#out + 1] = {KEYS[k], entries}
  want = want - #entries
end
return out
"""
