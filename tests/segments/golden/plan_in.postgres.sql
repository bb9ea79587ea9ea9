-- traits.plan == "pro" or traits.plan in ["team", "enterprise", 3]
SELECT p.id FROM profiles p
LEFT JOIN trait_values t1 ON t1.workspace_id = ? AND t1.profile_id = p.id AND t1.path = ? AND t1.elem = 0
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((t1.kind IS NOT NULL AND (t1.kind = 'string' AND ((t1.txt) COLLATE "C" = ?))) OR ((t1.kind IS NOT NULL AND (t1.kind = 'string' AND ((t1.txt) COLLATE "C" = ?))) OR (t1.kind IS NOT NULL AND (t1.kind = 'string' AND ((t1.txt) COLLATE "C" = ?))) OR (t1.kind IS NOT NULL AND (t1.kind = 'number' AND (t1.num = ?)))))
ORDER BY p.id COLLATE "C"
-- $1: 'ws_golden'
-- $2: 'plan'
-- $3: 'ws_golden'
-- $4: 'pro'
-- $5: 'team'
-- $6: 'enterprise'
-- $7: 3.0
