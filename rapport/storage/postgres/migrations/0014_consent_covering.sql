-- A person's consent is read on every decision, send and gate: the index on a profile's ledger now holds what
-- deciding reads (state, expiry and sequence), so those reads can be index-only.
DROP INDEX consent_profile;
CREATE INDEX consent_profile ON consent_ledger (workspace_id, profile_id, purpose, effective_at)
  INCLUDE (state, expires_at, seq);
