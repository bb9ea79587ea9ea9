-- The tables read by a profile's key on every decision, event and segment evaluation are stored in their
-- primary key's order (WITHOUT ROWID): a lookup is one b-tree search, not an index search and then a table
-- search. The tables are rebuilt with the same columns, keys and indexes.
CREATE TABLE identifiers_clustered (
  workspace_id TEXT NOT NULL,
  type TEXT NOT NULL,
  value_key TEXT NOT NULL,
  value_enc BLOB,
  profile_id TEXT NOT NULL,
  origin_profile_id TEXT NOT NULL,
  first_seen INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, type, value_key)
) WITHOUT ROWID;
INSERT INTO identifiers_clustered (workspace_id, type, value_key, value_enc, profile_id, origin_profile_id,
  first_seen)
SELECT workspace_id, type, value_key, value_enc, profile_id, origin_profile_id, first_seen FROM identifiers;
DROP TABLE identifiers;
ALTER TABLE identifiers_clustered RENAME TO identifiers;
CREATE INDEX identifiers_profile ON identifiers (workspace_id, profile_id);
CREATE INDEX identifiers_origin ON identifiers (workspace_id, origin_profile_id);
CREATE TABLE traits_clustered (
  workspace_id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  key_profile_id TEXT NOT NULL,
  source TEXT NOT NULL,
  ts INTEGER NOT NULL,
  message_id TEXT,
  PRIMARY KEY (workspace_id, profile_id, name)
) WITHOUT ROWID;
INSERT INTO traits_clustered (workspace_id, profile_id, name, value, key_profile_id, source, ts, message_id)
SELECT workspace_id, profile_id, name, value, key_profile_id, source, ts, message_id FROM traits;
DROP TABLE traits;
ALTER TABLE traits_clustered RENAME TO traits;
CREATE TABLE buckets_clustered (
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
) WITHOUT ROWID;
INSERT INTO buckets_clustered (workspace_id, profile_id, series, bucket, n, nn, total, vmin, vmax, first_ts,
  first_seq, first_val, last_ts, last_seq, last_val)
SELECT workspace_id, profile_id, series, bucket, n, nn, total, vmin, vmax, first_ts, first_seq, first_val,
  last_ts, last_seq, last_val FROM buckets;
DROP TABLE buckets;
ALTER TABLE buckets_clustered RENAME TO buckets;
CREATE TABLE bucket_values_clustered (
  workspace_id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  series TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (workspace_id, profile_id, series, bucket, value)
) WITHOUT ROWID;
INSERT INTO bucket_values_clustered (workspace_id, profile_id, series, bucket, value)
SELECT workspace_id, profile_id, series, bucket, value FROM bucket_values;
DROP TABLE bucket_values;
ALTER TABLE bucket_values_clustered RENAME TO bucket_values;
