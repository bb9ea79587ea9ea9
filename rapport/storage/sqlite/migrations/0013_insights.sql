-- Recommendation aggregates, rebuilt from stored events by `rapport insights recommendations build`
-- (rapport.recommendations.service.build). Every table but rec_purchases holds counts over many people.
-- One row per product seen in an order: orders holding it, distinct buyers, units, and its repurchase
-- interval (median gap between consecutive purchases by the same person; NULL below the repeat-buyer minimum).
CREATE TABLE rec_products (
  workspace_id TEXT NOT NULL,
  product_id TEXT NOT NULL,
  name TEXT,
  category TEXT,
  orders INTEGER NOT NULL,
  buyers INTEGER NOT NULL,
  units REAL NOT NULL,
  repeat_buyers INTEGER NOT NULL,
  interval_ms INTEGER,
  PRIMARY KEY (workspace_id, product_id)
);
-- Bought together: orders holding both products, P(other | product) and lift, the best few per product.
CREATE TABLE rec_pairs (
  workspace_id TEXT NOT NULL,
  product_id TEXT NOT NULL,
  other_id TEXT NOT NULL,
  together INTEGER NOT NULL,
  confidence REAL NOT NULL,
  lift REAL NOT NULL,
  PRIMARY KEY (workspace_id, product_id, other_id)
);
-- Popular in a segment (segment '*' is everyone): distinct buyers among its members at build time, units.
CREATE TABLE rec_popular (
  workspace_id TEXT NOT NULL,
  segment TEXT NOT NULL,
  product_id TEXT NOT NULL,
  buyers INTEGER NOT NULL,
  units REAL NOT NULL,
  PRIMARY KEY (workspace_id, segment, product_id)
);
-- Per person: the last purchase of each product (and a return after it), for replenishment reminders.
CREATE TABLE rec_purchases (
  workspace_id TEXT NOT NULL,
  profile_id TEXT NOT NULL,
  product_id TEXT NOT NULL,
  last_at INTEGER NOT NULL,
  purchases INTEGER NOT NULL,
  returned_at INTEGER,
  PRIMARY KEY (workspace_id, profile_id, product_id)
);
CREATE INDEX rec_purchases_product ON rec_purchases (workspace_id, product_id, last_at);
-- The last build of each workspace.
CREATE TABLE rec_builds (
  workspace_id TEXT NOT NULL PRIMARY KEY,
  built_at INTEGER NOT NULL,
  orders INTEGER NOT NULL,
  products INTEGER NOT NULL,
  pairs INTEGER NOT NULL,
  window_ms INTEGER NOT NULL
);
