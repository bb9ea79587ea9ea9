-- Exposures: a unit (the profile an experiment assignment was made for, experiment_assignments.origin_profile_id)
-- saw an experiment's variant. One row per unit and experiment: the first exposure starts the unit's metric
-- windows; last_at and exposures count the later ones. variant is NULL for a unit held out (reason says so).
-- source is 'placement:<name>' for a decision, 'journey:<name>/<step>' for a journey split.
CREATE TABLE experiment_exposures (
  workspace_id TEXT NOT NULL,
  origin_profile_id TEXT NOT NULL,
  experiment TEXT NOT NULL,
  variant TEXT,
  reason TEXT NOT NULL,
  source TEXT NOT NULL,
  first_at INTEGER NOT NULL,
  last_at INTEGER NOT NULL,
  exposures INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, origin_profile_id, experiment)
);
CREATE INDEX experiment_exposures_experiment ON experiment_exposures (workspace_id, experiment, first_at);

-- Impressions: a content block served to a person by a decision. Per-person impression caps count them; rows
-- older than the longest cap are of no use to a decision and may be pruned.
CREATE TABLE content_impressions (
  workspace_id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  block TEXT NOT NULL,
  placement TEXT NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX content_impressions_profile ON content_impressions (workspace_id, profile_id, block, at);
