-- Events waiting for the journey engine: ingestion and segment membership changes add the stored events a
-- journey of the workspace listens to (entry, wait_for, goal, exit_when, Segment Entered/Exited), in the same
-- transaction as the event; the journey worker feeds them to the engine in order and deletes them in the
-- transaction that stores what they caused, so each event reaches the journeys exactly once.
CREATE TABLE journey_inbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  workspace_id TEXT NOT NULL,
  event_seq INTEGER NOT NULL
);
CREATE INDEX journey_inbox_workspace ON journey_inbox (workspace_id, seq);
