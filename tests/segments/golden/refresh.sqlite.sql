-- recent_buyers: count("Order Completed", within=30d) >= 1
-- lapsed_buyers: count("Order Completed") >= 1 and count("Order Completed", within=90d) == 0
-- big_spenders: sum("Order Completed", "revenue", within=30d) > 200 or computed.orders_90d >= 3
-- pro_plan: traits.plan == "pro" and count("Page Viewed", within=7d) >= 1
-- everyone: None
SELECT id, matched, stored FROM (SELECT p.id, (SELECT CASE WHEN (CAST(COALESCE(g.a1, 0) AS REAL) >= ?) THEN ? ELSE 0 END + CASE WHEN ((CAST(COALESCE(g.a2, 0) AS REAL) >= ?) AND (CAST(COALESCE(g.a3, 0) AS REAL) = ?)) THEN ? ELSE 0 END FROM (SELECT 0 AS none, SUM(CASE WHEN bucket > ? THEN n END) AS a1, SUM(n) AS a2, SUM(CASE WHEN bucket > ? THEN n END) AS a3 FROM buckets WHERE 1 = 0) g) + COALESCE(x.delta, 0) + CASE WHEN ((CAST(COALESCE(w1.total, 0) AS REAL) > ?) OR (CAST(COALESCE(w2.n, 0) AS REAL) >= ?)) THEN ? ELSE 0 END + CASE WHEN ((t3.kind IS NOT NULL AND (t3.kind = 'string' AND (t3.txt = ?))) AND (CAST(COALESCE(w4.n, 0) AS REAL) >= ?)) THEN ? ELSE 0 END + ? AS matched, (SELECT COALESCE(SUM(CASE h.segment WHEN ? THEN ?  WHEN ? THEN ?  WHEN ? THEN ?  WHEN ? THEN ?  WHEN ? THEN ? ELSE 0 END), 0) FROM segment_history h WHERE h.workspace_id = ? AND h.profile_id = p.id AND h.exited_at IS NULL) AS stored FROM profiles p
LEFT JOIN (SELECT profile_id, SUM(total) AS total FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? AND bucket > ? GROUP BY profile_id) w1 ON w1.profile_id = p.id
LEFT JOIN (SELECT profile_id, SUM(n) AS n FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? AND bucket > ? GROUP BY profile_id) w2 ON w2.profile_id = p.id
LEFT JOIN trait_values t3 ON t3.workspace_id = ? AND t3.profile_id = p.id AND t3.path = ? AND t3.elem = 0
LEFT JOIN (SELECT profile_id, SUM(n) AS n FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ? AND bucket > ? GROUP BY profile_id) w4 ON w4.profile_id = p.id
LEFT JOIN (SELECT profile_id, CASE WHEN (CAST(COALESCE(g.a1, 0) AS REAL) >= ?) THEN ? ELSE 0 END + CASE WHEN ((CAST(COALESCE(g.a2, 0) AS REAL) >= ?) AND (CAST(COALESCE(g.a3, 0) AS REAL) = ?)) THEN ? ELSE 0 END - (SELECT CASE WHEN (CAST(COALESCE(g.a1, 0) AS REAL) >= ?) THEN ? ELSE 0 END + CASE WHEN ((CAST(COALESCE(g.a2, 0) AS REAL) >= ?) AND (CAST(COALESCE(g.a3, 0) AS REAL) = ?)) THEN ? ELSE 0 END FROM (SELECT 0 AS none, SUM(CASE WHEN bucket > ? THEN n END) AS a1, SUM(n) AS a2, SUM(CASE WHEN bucket > ? THEN n END) AS a3 FROM buckets WHERE 1 = 0) g) AS delta FROM (SELECT profile_id, SUM(CASE WHEN bucket > ? THEN n END) AS a1, SUM(n) AS a2, SUM(CASE WHEN bucket > ? THEN n END) AS a3 FROM buckets WHERE (workspace_id = ? AND series = ? AND bucket <= ?) GROUP BY profile_id) g) x ON x.profile_id = p.id
WHERE (p.workspace_id = ? AND p.merged_into IS NULL)) d WHERE matched <> stored
-- $1: 1.0
-- $2: 1
-- $3: 1.0
-- $4: 0.0
-- $5: 2
-- $6: 1769853600000
-- $7: 1764669600000
-- $8: 200.0
-- $9: 3.0
-- $10: 4
-- $11: 'pro'
-- $12: 1.0
-- $13: 8
-- $14: 16
-- $15: 'recent_buyers'
-- $16: 1
-- $17: 'lapsed_buyers'
-- $18: 2
-- $19: 'big_spenders'
-- $20: 4
-- $21: 'pro_plan'
-- $22: 8
-- $23: 'everyone'
-- $24: 16
-- $25: 'ws_golden'
-- $26: 'ws_golden'
-- $27: '92c926cc9498597e'
-- $28: 1772445600000
-- $29: 1769853600000
-- $30: 'ws_golden'
-- $31: '3ec73b9affef906f'
-- $32: 1772445600000
-- $33: 1764669600000
-- $34: 'ws_golden'
-- $35: 'plan'
-- $36: 'ws_golden'
-- $37: '58e5c9872dfeb6b3'
-- $38: 1772445600000
-- $39: 1771840800000
-- $40: 1.0
-- $41: 1
-- $42: 1.0
-- $43: 0.0
-- $44: 2
-- $45: 1.0
-- $46: 1
-- $47: 1.0
-- $48: 0.0
-- $49: 2
-- $50: 1769853600000
-- $51: 1764669600000
-- $52: 1769853600000
-- $53: 1764669600000
-- $54: 'ws_golden'
-- $55: '3ec73b9affef906f'
-- $56: 1772445600000
-- $57: 'ws_golden'
