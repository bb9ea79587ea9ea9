-- traits.vip != true and computed.skus_30d >= 3 and traits.nickname is null
SELECT p.id FROM profiles p
LEFT JOIN trait_values t1 ON t1.workspace_id = ? AND t1.profile_id = p.id AND t1.path = ? AND t1.elem = 0
LEFT JOIN (SELECT profile_id, COUNT(DISTINCT value) AS n FROM bucket_values WHERE workspace_id = ? AND series = ? AND bucket <= ? AND bucket > ? GROUP BY profile_id) v2 ON v2.profile_id = p.id
LEFT JOIN trait_values t3 ON t3.workspace_id = ? AND t3.profile_id = p.id AND t3.path = ? AND t3.elem = 0
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((t1.kind IS NOT NULL AND CASE WHEN t1.kind = 'bool' THEN (t1.num <> ?) ELSE TRUE END) AND (CAST(COALESCE(v2.n, 0) AS DOUBLE PRECISION) >= ?) AND NOT (t3.kind IS NOT NULL))
ORDER BY p.id COLLATE "C"
-- $1: 'ws_golden'
-- $2: 'vip'
-- $3: 'ws_golden'
-- $4: '4dfce21bca77690b'
-- $5: 1772445600000
-- $6: 1769853600000
-- $7: 'ws_golden'
-- $8: 'nickname'
-- $9: 'ws_golden'
-- $10: 1.0
-- $11: 3.0
