-- avg("Order Completed", "revenue") > 50 or min("Order Completed", "revenue", within=7d) < 5
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, SUM(nn) AS nn, SUM(total) AS total FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? GROUP BY profile_id) w1 ON w1.profile_id = p.id
LEFT JOIN (SELECT profile_id, MIN(vmin) AS vmin FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? AND bucket > ? GROUP BY profile_id) w2 ON w2.profile_id = p.id
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((COALESCE(w1.nn, 0) > 0 AND (w1.total / CAST(w1.nn AS REAL) > ?)) OR (w2.vmin IS NOT NULL AND (w2.vmin < ?)))
ORDER BY p.id
-- $1: 'ws_golden'
-- $2: '92c926cc9498597e'
-- $3: 1772445600000
-- $4: 'ws_golden'
-- $5: '92c926cc9498597e'
-- $6: 1772445600000
-- $7: 1771840800000
-- $8: 'ws_golden'
-- $9: 50.0
-- $10: 5.0
