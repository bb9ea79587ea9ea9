-- Secondary indexes of the journey tables lead with a globally unique id instead of workspace_id (queries
-- still filter on workspace_id). With workspace_id first, the planner could take one of them for the
-- primary-key lookups of dispatch and stepping (workspace_id = ? AND id = ?) while the table's statistics
-- were still those of a nearly empty table: a tie in its costs, and each lookup became a scan of the
-- workspace's rows. The provider index is partial: only sent messages have a provider id.
DROP INDEX journey_sends_profile;
DROP INDEX journey_sends_enrollment;
DROP INDEX journey_sends_provider;
DROP INDEX journey_enrollments_profile;
CREATE INDEX journey_sends_profile ON journey_sends (profile_id, created_at);
CREATE INDEX journey_sends_enrollment ON journey_sends (enrollment_id);
CREATE INDEX journey_sends_provider ON journey_sends (provider_id) WHERE provider_id IS NOT NULL;
CREATE INDEX journey_enrollments_profile ON journey_enrollments (profile_id, status);
