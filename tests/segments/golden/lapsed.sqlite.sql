-- computed.orders_90d == 0 and exists(traits.email)
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, SUM(n) AS n FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? AND bucket > ? GROUP BY profile_id) w1 ON w1.profile_id = p.id
LEFT JOIN trait_values t2 ON t2.workspace_id = ? AND t2.profile_id = p.id AND t2.path = ? AND t2.elem = 0
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((CAST(COALESCE(w1.n, 0) AS REAL) = ?) AND t2.kind IS NOT NULL)
ORDER BY p.id
-- $1: 'ws_golden'
-- $2: '3ec73b9affef906f'
-- $3: 1772445600000
-- $4: 1764669600000
-- $5: 'ws_golden'
-- $6: 'email'
-- $7: 'ws_golden'
-- $8: 0.0
