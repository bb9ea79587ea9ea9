-- in_segment("vip") and days_since("Order Completed") > 14
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, MAX(last_ts) AS last_ts FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? GROUP BY profile_id) w1 ON w1.profile_id = p.id
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND (EXISTS (SELECT 1 FROM segment_history h WHERE h.workspace_id = ? AND h.profile_id = p.id AND h.segment = ? AND h.entered_at <= ? AND (h.exited_at IS NULL OR h.exited_at > ?)) AND (w1.last_ts IS NOT NULL AND (CAST(CAST(? AS BIGINT) - w1.last_ts AS DOUBLE PRECISION) / 86400000 > ?)))
ORDER BY p.id COLLATE "C"
-- $1: 'ws_golden'
-- $2: '3ec73b9affef906f'
-- $3: 1772445600000
-- $4: 'ws_golden'
-- $5: 'ws_golden'
-- $6: 'vip'
-- $7: 1772445600000
-- $8: 1772445600000
-- $9: 1772445600000
-- $10: 14.0
