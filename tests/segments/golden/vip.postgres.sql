-- computed.revenue_total > 200 and count("Order Completed", within=30d) >= 1
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, SUM(total) AS total FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? GROUP BY profile_id) w1 ON w1.profile_id = p.id
LEFT JOIN (SELECT profile_id, SUM(n) AS n FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? AND bucket > ? GROUP BY profile_id) w2 ON w2.profile_id = p.id
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((CAST(COALESCE(w1.total, 0) AS DOUBLE PRECISION) > ?) AND (CAST(COALESCE(w2.n, 0) AS DOUBLE PRECISION) >= ?))
ORDER BY p.id COLLATE "C"
-- $1: 'ws_golden'
-- $2: '92c926cc9498597e'
-- $3: 1772445600000
-- $4: 'ws_golden'
-- $5: '3ec73b9affef906f'
-- $6: 1772445600000
-- $7: 1769853600000
-- $8: 'ws_golden'
-- $9: 200.0
-- $10: 1.0
