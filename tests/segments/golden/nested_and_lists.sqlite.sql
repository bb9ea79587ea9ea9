-- traits.address.city starts_with "Ber" and not traits.tags contains "churned"
SELECT p.id FROM profiles p
LEFT JOIN trait_values t1 ON t1.workspace_id = ? AND t1.profile_id = p.id AND t1.path = ? AND t1.elem = 0
LEFT JOIN trait_values t2 ON t2.workspace_id = ? AND t2.profile_id = p.id AND t2.path = ? AND t2.elem = 0
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((t1.kind IS NOT NULL AND t1.kind = 'string' AND (instr(t1.txt, ?) = 1)) AND NOT (t2.kind IS NOT NULL AND ((t2.kind = 'string' AND (instr(t2.txt, ?) > 0)) OR (t2.kind = 'array' AND EXISTS (SELECT 1 FROM trait_values l3 WHERE l3.workspace_id = ? AND l3.profile_id = p.id AND l3.path = ? AND l3.elem > 0 AND (l3.kind = 'string' AND (l3.txt = ?)))))))
ORDER BY p.id
-- $1: 'ws_golden'
-- $2: 'address\x1fcity'
-- $3: 'ws_golden'
-- $4: 'tags'
-- $5: 'ws_golden'
-- $6: 'Ber'
-- $7: 'churned'
-- $8: 'ws_golden'
-- $9: 'tags'
-- $10: 'churned'
