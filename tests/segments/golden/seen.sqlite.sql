-- last_seen("Page Viewed", within=1h) > 2026-03-01 or first_seen("Signed Up") < 2026-01-01
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, MAX(last_ts) AS last_ts FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? AND bucket > ? GROUP BY profile_id) w1 ON w1.profile_id = p.id
LEFT JOIN (SELECT profile_id, MIN(first_ts) AS first_ts FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? GROUP BY profile_id) w2 ON w2.profile_id = p.id
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((w1.last_ts IS NOT NULL AND (CAST(w1.last_ts AS REAL) > ?)) OR (w2.first_ts IS NOT NULL AND (CAST(w2.first_ts AS REAL) < ?)))
ORDER BY p.id
-- $1: 'ws_golden'
-- $2: '58e5c9872dfeb6b3'
-- $3: 1772445600000
-- $4: 1772442000000
-- $5: 'ws_golden'
-- $6: '1c158799d3e7cedc'
-- $7: 1772445600000
-- $8: 'ws_golden'
-- $9: 1772323200000.0
-- $10: 1767225600000.0
