-- sum("Order Completed", "revenue", within=90d, where=event.currency == "EUR") >= 100
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, SUM(total) AS total FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? AND bucket > ? GROUP BY profile_id) w1 ON w1.profile_id = p.id
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND (CAST(COALESCE(w1.total, 0) AS REAL) >= ?)
ORDER BY p.id
-- $1: 'ws_golden'
-- $2: 'f8fe2a25d64ddab6'
-- $3: 1772445600000
-- $4: 1764669600000
-- $5: 'ws_golden'
-- $6: 100.0
