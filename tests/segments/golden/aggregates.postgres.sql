-- avg("Order Completed", "revenue") > 50 or min("Order Completed", "revenue", within=7d) < 5
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, SUM(nn) AS w1_nn, SUM(total) AS w1_total, MIN(CASE WHEN bucket > ? THEN vmin END) AS w2_vmin FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? GROUP BY profile_id) w1 ON w1.profile_id = p.id
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((COALESCE(w1.w1_nn, 0) > 0 AND (w1.w1_total / CAST(w1.w1_nn AS DOUBLE PRECISION) > ?)) OR (w1.w2_vmin IS NOT NULL AND (w1.w2_vmin < ?)))
ORDER BY p.id COLLATE "C"
-- $1: 1771840800000
-- $2: 'ws_golden'
-- $3: '92c926cc9498597e'
-- $4: 1772445600000
-- $5: 'ws_golden'
-- $6: 50.0
-- $7: 5.0
