-- Experiment assignments are stored on the unified profile, so that merges do not flip variants.
-- origin_profile_id is the profile the assignment was made for (it never changes); profile_id is the live
-- profile it now counts for: a merge moves it to the winner, or sets it to NULL when the winner has its own
-- assignment in that experiment (shadowed_by names that winner), and an unmerge gives it back. variant is NULL
-- for a unit held out or left out by the traffic allocation (reason says which).
CREATE TABLE experiment_assignments (
  workspace_id TEXT NOT NULL,
  origin_profile_id TEXT NOT NULL,
  experiment TEXT NOT NULL,
  profile_id TEXT,
  shadowed_by TEXT,
  variant TEXT,
  bucket INTEGER NOT NULL,
  reason TEXT NOT NULL,
  assigned_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, origin_profile_id, experiment)
);
CREATE UNIQUE INDEX experiment_assignments_profile ON experiment_assignments (workspace_id, profile_id, experiment);
