-- computed.email_open_rate >= 0.2 and computed.days_since_last_order <= 30
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, SUM(n) AS n FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? AND bucket > ? GROUP BY profile_id) w1 ON w1.profile_id = p.id
LEFT JOIN (SELECT profile_id, SUM(n) AS n FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? AND bucket > ? GROUP BY profile_id) w2 ON w2.profile_id = p.id
LEFT JOIN (SELECT profile_id, MAX(bucket) AS last_bucket FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? GROUP BY profile_id) w3 ON w3.profile_id = p.id
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((COALESCE(w2.n, 0) > 0 AND (CAST(COALESCE(w1.n, 0) AS REAL) / CAST(w2.n AS REAL) >= ?)) AND (w3.last_bucket IS NOT NULL AND (CAST((? - w3.last_bucket) / 86400000 AS REAL) <= ?)))
ORDER BY p.id
-- $1: 'ws_golden'
-- $2: 'ae38436829cc0bae'
-- $3: 1772445600000
-- $4: 1764669600000
-- $5: 'ws_golden'
-- $6: '40afa8ecd682d987'
-- $7: 1772445600000
-- $8: 1764669600000
-- $9: 'ws_golden'
-- $10: '3ec73b9affef906f'
-- $11: 1772445600000
-- $12: 'ws_golden'
-- $13: 0.2
-- $14: 1772445600000
-- $15: 30.0
