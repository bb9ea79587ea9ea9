-- computed.last_plan == "pro" or computed.last_plan contains "team"
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, CASE json_type(val) WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' WHEN 'text' THEN 'string' WHEN 'true' THEN 'bool' WHEN 'false' THEN 'bool' WHEN 'null' THEN NULL ELSE json_type(val) END AS kind, CAST(json_extract(val, '$') AS REAL) AS num, json_extract(val, '$') AS txt, val FROM (SELECT profile_id, last_val AS val, ROW_NUMBER() OVER (PARTITION BY profile_id ORDER BY last_ts DESC, last_seq DESC) AS rn FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ?) r WHERE rn = 1) e1 ON e1.profile_id = p.id
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((e1.kind IS NOT NULL AND (e1.kind = 'string' AND (e1.txt = ?))) OR (e1.kind IS NOT NULL AND ((e1.kind = 'string' AND (instr(e1.txt, ?) > 0)) OR (e1.kind = 'array' AND EXISTS (SELECT 1 FROM json_each(CASE WHEN e1.kind = 'array' THEN e1.val ELSE '[]' END) j2 WHERE (CASE j2.type WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' WHEN 'text' THEN 'string' WHEN 'true' THEN 'bool' WHEN 'false' THEN 'bool' WHEN 'null' THEN NULL ELSE j2.type END IS NOT NULL AND (CASE j2.type WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' WHEN 'text' THEN 'string' WHEN 'true' THEN 'bool' WHEN 'false' THEN 'bool' WHEN 'null' THEN NULL ELSE j2.type END = 'string' AND (j2.value = ?))))))))
ORDER BY p.id
-- $1: 'ws_golden'
-- $2: '516f2f2e2ac59eb7'
-- $3: 1772445600000
-- $4: 'ws_golden'
-- $5: 'pro'
-- $6: 'team'
-- $7: 'team'
