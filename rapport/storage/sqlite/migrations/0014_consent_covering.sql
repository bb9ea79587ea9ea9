-- A person's consent is read on every decision, send and gate: the index on a profile's ledger now holds what
-- deciding reads (state and expiry; seq is the rowid), so those reads never visit the table.
DROP INDEX consent_profile;
CREATE INDEX consent_profile ON consent_ledger (workspace_id, profile_id, purpose, effective_at, state, expires_at);
