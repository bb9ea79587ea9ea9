-- A batch refresh compares every live profile's open stays with what the rules select: an index of the
-- open stays by profile holds all it reads (the segment), so the comparison never visits the table.
CREATE INDEX segment_open ON segment_history (workspace_id, profile_id, segment) WHERE exited_at IS NULL;
