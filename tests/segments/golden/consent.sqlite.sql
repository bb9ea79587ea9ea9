-- consent.marketing_email and consent.newsletter and not consent.necessary
SELECT p.id FROM profiles p
LEFT JOIN (SELECT profile_id, state, expires_at FROM (SELECT profile_id, state, expires_at, ROW_NUMBER() OVER (PARTITION BY profile_id ORDER BY effective_at DESC, seq DESC) AS rn FROM consent_ledger WHERE workspace_id = ? AND purpose = ? AND effective_at <= ?) l WHERE rn = 1) c1 ON c1.profile_id = p.id
LEFT JOIN (SELECT profile_id, state, expires_at FROM (SELECT profile_id, state, expires_at, ROW_NUMBER() OVER (PARTITION BY profile_id ORDER BY effective_at DESC, seq DESC) AS rn FROM consent_ledger WHERE workspace_id = ? AND purpose = ? AND effective_at <= ?) l WHERE rn = 1) c2 ON c2.profile_id = p.id
WHERE p.workspace_id = ? AND p.merged_into IS NULL AND ((CASE WHEN c1.state = 'granted' AND (c1.expires_at IS NULL OR c1.expires_at > ?) THEN 1 WHEN c1.state IS NULL OR c1.state = 'granted' THEN 0 ELSE 0 END = ?) AND (CASE WHEN c2.state = 'granted' AND (c2.expires_at IS NULL OR c2.expires_at > ?) THEN 1 WHEN c2.state IS NULL OR c2.state = 'granted' THEN 1 ELSE 0 END = ?) AND NOT (1 = ?))
ORDER BY p.id
-- $1: 'ws_golden'
-- $2: 'marketing_email'
-- $3: 1772445600000
-- $4: 'ws_golden'
-- $5: 'newsletter'
-- $6: 1772445600000
-- $7: 'ws_golden'
-- $8: 1772445600000
-- $9: 1.0
-- $10: 1772445600000
-- $11: 1.0
-- $12: 1.0
