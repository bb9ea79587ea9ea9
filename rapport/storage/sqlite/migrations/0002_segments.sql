-- Segments: trait values flattened for rules, segment membership and its history.
-- trait_values is derived from traits (rebuilt for a profile whenever its traits change): one
-- row per non-null value, addressed by path (trait name, then nested object keys, joined by
-- U+001F); elem 0 is the value at the path, elem n > 0 is element n-1 of a list at the path.
-- kind: number | string | bool | object | array | sealed (an encrypted personal value).
-- num: numbers, and bools as 0/1; txt: strings; instant: numbers, and strings that are ISO dates
-- (rapport.rules.dates.parse_iso), in epoch milliseconds.
CREATE TABLE trait_values (
  workspace_id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  path TEXT NOT NULL,
  elem INTEGER NOT NULL,
  kind TEXT NOT NULL,
  num REAL,
  txt TEXT,
  instant REAL,
  PRIMARY KEY (workspace_id, profile_id, path, elem)
);
CREATE INDEX trait_values_num ON trait_values (workspace_id, path, num);
CREATE INDEX trait_values_txt ON trait_values (workspace_id, path, txt);
-- One row per stay of a profile in a segment; exited_at is NULL while it is a member.
CREATE TABLE segment_history (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  workspace_id TEXT NOT NULL,
  segment TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  entered_at INTEGER NOT NULL,
  exited_at INTEGER
);
CREATE UNIQUE INDEX segment_current ON segment_history (workspace_id, segment, profile_id) WHERE exited_at IS NULL;
CREATE INDEX segment_profile ON segment_history (workspace_id, profile_id, segment);
-- When a profile's segment membership may next change with no new event (a window passing, a
-- grant expiring): the scheduler re-evaluates it then.
CREATE TABLE segment_timers (
  workspace_id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  due_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, profile_id)
);
CREATE INDEX segment_timers_due ON segment_timers (due_at);
-- Which version of each segment has had its whole-workspace refresh (its first population).
CREATE TABLE segment_refreshes (
  workspace_id TEXT NOT NULL,
  segment TEXT NOT NULL,
  version INTEGER NOT NULL,
  refreshed_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, segment, version)
);
