-- The model catalog: one row per trained version of a Model resource. spec is the resource as trained;
-- parameters are the fitted numbers (standardization, coefficients, calibration map: JSON numbers only,
-- scored by rapport.models.score without the training library); metrics are measured on the held-out test
-- split. cutoff is the instant the features were read at (the label counts the target event after it).
-- No profile is named here: the scores themselves live in the computed-trait buckets of the model's series.
CREATE TABLE model_versions (
  workspace_id TEXT NOT NULL,
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  resource_version INTEGER NOT NULL,
  status TEXT NOT NULL,
  trained_at BIGINT NOT NULL,
  cutoff BIGINT NOT NULL,
  spec TEXT NOT NULL,
  parameters TEXT NOT NULL,
  metrics TEXT NOT NULL,
  scored_at BIGINT,
  scored INTEGER,
  PRIMARY KEY (workspace_id, name, version)
);
