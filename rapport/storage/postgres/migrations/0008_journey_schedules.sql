-- Journey lifecycle: runs of scheduled entries, and migrations of enrollments to a newly published version.
-- One row per occurrence of a journey's schedule that a worker started (occurrence_at: the instant the
-- schedule named); the row is the guard that runs an occurrence once, and after_profile its cursor: the
-- audience is enrolled in batches by profile id, each batch committed with the cursor it reached.
-- status running | done.
CREATE TABLE journey_schedule_runs (
  workspace_id TEXT NOT NULL,
  journey TEXT NOT NULL,
  occurrence_at BIGINT NOT NULL,
  version INTEGER NOT NULL,
  status TEXT NOT NULL,
  after_profile TEXT,
  enrolled INTEGER NOT NULL DEFAULT 0,
  skipped INTEGER NOT NULL DEFAULT 0,
  started_at BIGINT NOT NULL,
  finished_at BIGINT,
  PRIMARY KEY (workspace_id, journey, occurrence_at)
);
-- One row per published version with on_publish: migrate: moving the waiting enrollments of from_version
-- to version, in batches by enrollment id (after_enrollment is the cursor); moved and kept count the
-- enrollments moved and those left to drain on from_version (at a step the map does not name).
CREATE TABLE journey_migrations (
  workspace_id TEXT NOT NULL,
  journey TEXT NOT NULL,
  version INTEGER NOT NULL,
  from_version INTEGER NOT NULL,
  status TEXT NOT NULL,
  after_enrollment TEXT,
  moved INTEGER NOT NULL DEFAULT 0,
  kept INTEGER NOT NULL DEFAULT 0,
  started_at BIGINT NOT NULL,
  finished_at BIGINT,
  PRIMARY KEY (workspace_id, journey, version)
);
-- Every enrollment a migration moved: from which version and step to which, and its timer after the move.
CREATE TABLE journey_moves (
  workspace_id TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  journey TEXT NOT NULL,
  from_version INTEGER NOT NULL,
  from_step TEXT NOT NULL,
  to_version INTEGER NOT NULL,
  to_step TEXT NOT NULL,
  waiting_until BIGINT,
  moved_at BIGINT NOT NULL,
  PRIMARY KEY (workspace_id, enrollment_id, to_version)
);
CREATE INDEX journey_moves_journey ON journey_moves (workspace_id, journey, to_version);
