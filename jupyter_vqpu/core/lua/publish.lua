-- publish: make a new immutable snapshot the device's current one (device
-- mutation). Compare-and-set on the device version so two publishers cannot
-- both become version N. Old snapshots stay readable.
-- KEYS[1] = device           the device hash
-- KEYS[2] = snapshot         the new snapshot's key
-- KEYS[3] = snapshots        the snapshot index zset
-- KEYS[4] = events           the device's events stream
-- ARGV[1] = device_name
-- ARGV[2] = snapshot_id
-- ARGV[3] = data             the snapshot's canonical bytes
-- ARGV[4] = version
-- ARGV[5] = expected_version the current version expected ('0' : device is new)
-- ARGV[6] = num_qubits
-- ARGV[7] = events_maxlen
-- ARGV[8] = only_if_new      '1' : only if the device is new
-- returns {'published', version} | {'exists', current version} | {'conflict', current version}
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[8] == '1' and current > 0 then return {'exists', current} end
if current ~= tonumber(ARGV[5]) then return {'conflict', current} end
redis.call('SET', KEYS[2], ARGV[3], 'NX')
local now = now_ms()
redis.call('ZADD', KEYS[3], tonumber(ARGV[4]), ARGV[2])
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'snapshot', ARGV[2], 'version', ARGV[4],
           'num_qubits', ARGV[6], 'snapshot_at', now)
if current == 0 then redis.call('HSETNX', KEYS[1], 'admin_state', 'active') end
emit(nil, KEYS[4], ARGV[7], '', '', 'snapshot',
     {device = ARGV[1], snapshot = ARGV[2], version = tonumber(ARGV[4])})
return {'published', tonumber(ARGV[4])}
