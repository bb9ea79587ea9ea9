-- computed.last_seen < 2026-03-01T00:00:00Z or computed.first_seen == "2026-01-01T00:00:00.000Z"
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, MIN(first_ts) AS first_ts, MAX(last_ts) AS last_ts FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? GROUP BY profile_id) w1 ON w1.profile_id = p.id
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((w1.last_ts IS NOT NULL AND (CAST(w1.last_ts AS DOUBLE PRECISION) < ?)) OR (w1.first_ts IS NOT NULL AND ((to_char(to_timestamp(((w1.first_ts - ((w1.first_ts % 1000 + 1000) % 1000)) / 1000)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || '.' || lpad(CAST(((w1.first_ts % 1000 + 1000) % 1000) AS TEXT), 3, '0') || 'Z') COLLATE "C" = ?)))
ORDER BY p.id COLLATE "C"
-- $1: 'ws_golden'
-- $2: 'd9eda932a7d21bb9'
-- $3: 1772445600000
-- $4: 'ws_golden'
-- $5: 1772323200000.0
-- $6: '2026-01-01T00:00:00.000Z'
