-- Foundation: workspaces, credentials, events, identity, profiles, traits, computed series,
-- consent ledger, resources, quarantine, audit log. Times are epoch milliseconds.
CREATE TABLE workspaces (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  wrapped_key BLOB NOT NULL,
  settings TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE credentials (
  workspace_id TEXT NOT NULL REFERENCES workspaces(id),
  id TEXT NOT NULL,
  kind TEXT NOT NULL,
  role TEXT,
  secret_hash TEXT NOT NULL UNIQUE,
  label TEXT,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER,
  PRIMARY KEY (workspace_id, id)
);
CREATE TABLE profiles (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  workspace_id TEXT NOT NULL,
  id TEXT NOT NULL,
  merged_into TEXT,
  data_key BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (workspace_id, id)
);
CREATE INDEX profiles_merged_into ON profiles (workspace_id, merged_into);
CREATE TABLE identifiers (
  workspace_id TEXT NOT NULL,
  type TEXT NOT NULL,
  value_key TEXT NOT NULL,
  value_enc BLOB,
  profile_id TEXT NOT NULL,
  origin_profile_id TEXT NOT NULL,
  first_seen INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, type, value_key)
);
CREATE INDEX identifiers_profile ON identifiers (workspace_id, profile_id);
CREATE INDEX identifiers_origin ON identifiers (workspace_id, origin_profile_id);
CREATE TABLE merges (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  workspace_id TEXT NOT NULL,
  id TEXT NOT NULL,
  winner TEXT NOT NULL,
  loser TEXT NOT NULL,
  identifiers TEXT NOT NULL,
  message_id TEXT,
  reason TEXT NOT NULL,
  merged_at INTEGER NOT NULL,
  undone_at INTEGER,
  UNIQUE (workspace_id, id)
);
CREATE INDEX merges_profiles ON merges (workspace_id, winner);
CREATE INDEX merges_loser ON merges (workspace_id, loser);
CREATE TABLE merge_blocks (
  workspace_id TEXT NOT NULL,
  a TEXT NOT NULL,
  b TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, a, b)
);
CREATE TABLE identity_conflicts (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  workspace_id TEXT NOT NULL,
  identifier_type TEXT NOT NULL,
  identifier_key TEXT NOT NULL,
  holder TEXT,
  target TEXT NOT NULL,
  reason TEXT NOT NULL,
  message_id TEXT,
  recorded_at INTEGER NOT NULL
);
CREATE INDEX identity_conflicts_ws ON identity_conflicts (workspace_id, seq);
CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  workspace_id TEXT NOT NULL,
  dedupe_key TEXT NOT NULL,
  message_id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  origin_profile_id TEXT NOT NULL,
  type TEXT NOT NULL,
  name TEXT,
  user_id TEXT,
  anonymous_id TEXT,
  ts INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  restricted INTEGER NOT NULL DEFAULT 0,
  flagged INTEGER NOT NULL DEFAULT 0,
  body TEXT NOT NULL,
  UNIQUE (workspace_id, dedupe_key)
);
CREATE INDEX events_profile_ts ON events (workspace_id, profile_id, ts, seq);
CREATE INDEX events_origin ON events (workspace_id, origin_profile_id);
CREATE INDEX events_name_seq ON events (workspace_id, name, seq);
CREATE TABLE traits (
  workspace_id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  key_profile_id TEXT NOT NULL,
  source TEXT NOT NULL,
  ts INTEGER NOT NULL,
  message_id TEXT,
  PRIMARY KEY (workspace_id, profile_id, name)
);
CREATE TABLE buckets (
  workspace_id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  series TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  n INTEGER NOT NULL,
  nn INTEGER NOT NULL,
  total REAL NOT NULL,
  vmin REAL,
  vmax REAL,
  first_ts INTEGER NOT NULL,
  first_seq INTEGER NOT NULL,
  first_val TEXT,
  last_ts INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  last_val TEXT,
  PRIMARY KEY (workspace_id, profile_id, series, bucket)
);
CREATE TABLE bucket_values (
  workspace_id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  series TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (workspace_id, profile_id, series, bucket, value)
);
CREATE TABLE series (
  workspace_id TEXT NOT NULL,
  id TEXT NOT NULL,
  definition TEXT NOT NULL,
  state TEXT NOT NULL,
  watermark INTEGER NOT NULL,
  total INTEGER NOT NULL DEFAULT 0,
  done INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, id)
);
CREATE TABLE consent_ledger (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  workspace_id TEXT NOT NULL,
  id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  origin_profile_id TEXT NOT NULL,
  purpose TEXT NOT NULL,
  state TEXT NOT NULL,
  legal_basis TEXT NOT NULL,
  source TEXT NOT NULL,
  policy_version TEXT,
  proof TEXT,
  recorded_at INTEGER NOT NULL,
  effective_at INTEGER NOT NULL,
  expires_at INTEGER,
  message_id TEXT,
  UNIQUE (workspace_id, id)
);
CREATE INDEX consent_profile ON consent_ledger (workspace_id, profile_id, purpose, effective_at);
CREATE INDEX consent_origin ON consent_ledger (workspace_id, origin_profile_id);
CREATE TABLE resources (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  workspace_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  spec TEXT NOT NULL,
  digest TEXT NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  actor TEXT NOT NULL,
  applied_at INTEGER NOT NULL,
  UNIQUE (workspace_id, kind, name, version)
);
CREATE TABLE quarantine (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  workspace_id TEXT NOT NULL,
  id TEXT NOT NULL,
  message_id TEXT NOT NULL,
  event_name TEXT,
  plan TEXT NOT NULL,
  violations TEXT NOT NULL,
  payload BLOB NOT NULL,
  received_at INTEGER NOT NULL,
  replayed_at INTEGER,
  UNIQUE (workspace_id, id)
);
CREATE INDEX quarantine_open ON quarantine (workspace_id, replayed_at, seq);
CREATE TABLE audit_log (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  workspace_id TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX audit_ws ON audit_log (workspace_id, seq);
CREATE TABLE imports (
  workspace_id TEXT NOT NULL,
  source TEXT NOT NULL,
  position INTEGER NOT NULL,
  total INTEGER,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER,
  PRIMARY KEY (workspace_id, source)
);
