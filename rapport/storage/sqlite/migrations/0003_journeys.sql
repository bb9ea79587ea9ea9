-- Journeys: enrollments, their timers, the send log and entry history.
-- One row per enrollment of a profile in a journey version; state is the machine's Enrollment as JSON
-- (rapport.journeys.engine encodes it), status mirrors it so queries need not parse the JSON.
-- assignments: the split paths taken, JSON {step id: path}.
CREATE TABLE journey_enrollments (
  workspace_id TEXT NOT NULL,
  id TEXT NOT NULL,
  journey TEXT NOT NULL,
  version INTEGER NOT NULL,
  profile_id TEXT NOT NULL,
  state TEXT NOT NULL,
  status TEXT NOT NULL,
  assignments TEXT NOT NULL DEFAULT '{}',
  entered_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX journey_enrollments_active ON journey_enrollments (workspace_id, journey, profile_id)
  WHERE status = 'active';
CREATE INDEX journey_enrollments_profile ON journey_enrollments (workspace_id, profile_id, status);
-- When an active enrollment next wakes up. A worker that fails to step one leases it for a while
-- (leased_until, lease_owner) so the others go on with the rest.
CREATE TABLE journey_timers (
  workspace_id TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  due_at INTEGER NOT NULL,
  leased_until INTEGER,
  lease_owner TEXT,
  PRIMARY KEY (workspace_id, enrollment_id)
);
CREATE INDEX journey_timers_due ON journey_timers (due_at);
-- Every message a journey intends to send, keyed by its idempotency key (one per enrollment and step):
-- status scheduled | sent | held | refused | failed; due_at is when dispatch next looks at it (backoff,
-- the end of quiet hours); leased_until/lease_owner mark a send handed to a channel and not yet marked.
CREATE TABLE journey_sends (
  workspace_id TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  enrollment_id TEXT NOT NULL,
  journey TEXT NOT NULL,
  version INTEGER NOT NULL,
  step_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  channel TEXT NOT NULL,
  template TEXT,
  tags TEXT NOT NULL DEFAULT '[]',
  profile_id TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT,
  detail TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  due_at INTEGER NOT NULL,
  leased_until INTEGER,
  lease_owner TEXT,
  sent_at INTEGER,
  provider_id TEXT,
  PRIMARY KEY (workspace_id, idempotency_key)
);
CREATE INDEX journey_sends_due ON journey_sends (status, due_at);
CREATE INDEX journey_sends_profile ON journey_sends (workspace_id, profile_id, created_at);
CREATE INDEX journey_sends_enrollment ON journey_sends (workspace_id, enrollment_id);
-- The last entry of each profile into each journey, for the re-entry policy.
CREATE TABLE journey_entries (
  workspace_id TEXT NOT NULL,
  journey TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  last_entered_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, journey, profile_id)
);
