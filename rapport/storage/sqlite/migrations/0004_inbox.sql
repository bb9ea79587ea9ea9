-- Channels that deliver into Rapport's own storage: the in-app inbox and offline task lists.
-- Each row is one message of a send, keyed by its idempotency key, so a retried send stores nothing twice.
-- profile_id is the profile the send addressed (reads gather a live profile's merged-in profiles too);
-- data is the message's JSON data object.
CREATE TABLE inbox_messages (
  workspace_id TEXT NOT NULL,
  id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  title TEXT,
  body TEXT,
  data TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  read_at INTEGER,
  PRIMARY KEY (workspace_id, id),
  UNIQUE (workspace_id, idempotency_key)
);
CREATE INDEX inbox_messages_profile ON inbox_messages (workspace_id, profile_id, created_at, id);
-- Work for people (a call list, an in-store follow-up): channel is the offline channel (the list) it was
-- sent through; done_at and done_by (the credential that marked it) stay NULL while the task is open.
CREATE TABLE offline_tasks (
  workspace_id TEXT NOT NULL,
  id TEXT NOT NULL,
  channel TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  title TEXT,
  body TEXT,
  data TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  done_at INTEGER,
  done_by TEXT,
  PRIMARY KEY (workspace_id, id),
  UNIQUE (workspace_id, idempotency_key)
);
CREATE INDEX offline_tasks_channel ON offline_tasks (workspace_id, channel, created_at, id);
