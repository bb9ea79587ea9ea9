-- The identity-verification secret can be rotated: its version (the secret is derived from the workspace key and
-- the version) and, during a rotation, until when the previous version's hashes are still accepted.
ALTER TABLE workspaces ADD COLUMN identity_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE workspaces ADD COLUMN identity_previous_until BIGINT;
