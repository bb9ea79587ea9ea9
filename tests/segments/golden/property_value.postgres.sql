-- computed.last_plan == "pro" or computed.last_plan contains "team"
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, CASE jsonb_typeof(val) WHEN 'number' THEN 'number' WHEN 'string' THEN 'string' WHEN 'boolean' THEN 'bool' WHEN 'null' THEN NULL ELSE jsonb_typeof(val) END AS kind, CASE jsonb_typeof(val) WHEN 'number' THEN CAST(val #>> '{}' AS DOUBLE PRECISION) WHEN 'boolean' THEN CASE WHEN val #>> '{}' = 'true' THEN 1.0 ELSE 0.0 END END AS num, val #>> '{}' AS txt, val FROM (SELECT profile_id, CAST(last_val AS JSONB) AS val, ROW_NUMBER() OVER (PARTITION BY profile_id ORDER BY last_ts DESC, last_seq DESC) AS rn FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ?) r WHERE rn = 1) e1 ON e1.profile_id = p.id
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((e1.kind IS NOT NULL AND (e1.kind = 'string' AND ((e1.txt) COLLATE "C" = ?))) OR (e1.kind IS NOT NULL AND ((e1.kind = 'string' AND (strpos(e1.txt, ?) > 0)) OR (e1.kind = 'array' AND EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN e1.kind = 'array' THEN e1.val ELSE CAST('[]' AS JSONB) END) AS j2(v) WHERE (CASE jsonb_typeof(j2.v) WHEN 'number' THEN 'number' WHEN 'string' THEN 'string' WHEN 'boolean' THEN 'bool' WHEN 'null' THEN NULL ELSE jsonb_typeof(j2.v) END IS NOT NULL AND (CASE jsonb_typeof(j2.v) WHEN 'number' THEN 'number' WHEN 'string' THEN 'string' WHEN 'boolean' THEN 'bool' WHEN 'null' THEN NULL ELSE jsonb_typeof(j2.v) END = 'string' AND ((j2.v #>> '{}') COLLATE "C" = ?))))))))
ORDER BY p.id COLLATE "C"
-- $1: 'ws_golden'
-- $2: '516f2f2e2ac59eb7'
-- $3: 1772445600000
-- $4: 'ws_golden'
-- $5: 'pro'
-- $6: 'team'
-- $7: 'team'
