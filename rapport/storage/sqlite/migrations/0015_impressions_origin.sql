-- Impressions of capped blocks follow the person through merges and back through unmerges, as events do: each
-- remembers the profile it was recorded for.
ALTER TABLE content_impressions ADD COLUMN origin_profile_id TEXT;
UPDATE content_impressions SET origin_profile_id = profile_id;
CREATE INDEX content_impressions_origin ON content_impressions (workspace_id, origin_profile_id);
