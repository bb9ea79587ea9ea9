-- Delivery feedback: suppressed addresses and engagement with sent messages.
-- A hard bounce or complaint recorded for one address on one channel; address_hash is the workspace's keyed
-- blind index of the normalized address (rapport.channels.feedback.address_hash; never the address).
-- profile_id is the person the feedback was matched to (NULL when no profile has the address); source
-- ses | sendgrid | manual; detail the provider's explanation with addresses masked.
CREATE TABLE suppressions (
  workspace_id TEXT NOT NULL,
  profile_id TEXT,
  channel TEXT NOT NULL,
  address_hash TEXT NOT NULL,
  reason TEXT NOT NULL,
  source TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '',
  recorded_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, channel, address_hash, reason)
);
CREATE INDEX suppressions_profile ON suppressions (workspace_id, profile_id);
-- Opens (kind 'open', target '') and clicks (kind 'click', target the SHA-256 hex of the URL) of one sent
-- message, counted; the first of each adds an event to the person's timeline, the others only count.
CREATE TABLE email_engagement (
  workspace_id TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  kind TEXT NOT NULL,
  target TEXT NOT NULL,
  url TEXT,
  profile_id TEXT NOT NULL,
  count INTEGER NOT NULL,
  first_at INTEGER NOT NULL,
  last_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, idempotency_key, kind, target)
);
CREATE INDEX email_engagement_profile ON email_engagement (workspace_id, profile_id);
-- Provider feedback names the message by the id the provider gave it (journey_sends.provider_id).
CREATE INDEX journey_sends_provider ON journey_sends (workspace_id, provider_id);
