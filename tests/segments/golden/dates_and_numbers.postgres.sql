-- traits.signup >= 2026-01-01 and traits.age < 30 and traits.age != 2.5
SELECT p.id FROM profiles p
LEFT JOIN trait_values t1 ON t1.workspace_id = ? AND t1.profile_id = p.id AND t1.path = ? AND t1.elem = 0
LEFT JOIN trait_values t2 ON t2.workspace_id = ? AND t2.profile_id = p.id AND t2.path = ? AND t2.elem = 0
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((t1.kind IS NOT NULL AND COALESCE((t1.instant >= ?), FALSE)) AND (t2.kind IS NOT NULL AND (t2.kind = 'number' AND (t2.num < ?))) AND (t2.kind IS NOT NULL AND CASE WHEN t2.kind = 'number' THEN (t2.num <> ?) ELSE TRUE END))
ORDER BY p.id COLLATE "C"
-- $1: 'ws_golden'
-- $2: 'signup'
-- $3: 'ws_golden'
-- $4: 'age'
-- $5: 'ws_golden'
-- $6: 1767225600000.0
-- $7: 30.0
-- $8: 2.5
