-- A version a `rebuild --dry-run` verified: complete and equal to the active one at a common
-- set of offsets, waiting for `rebuild` to resume it, verify it again and swap it in.

ALTER TABLE projection_versions DROP CONSTRAINT projection_versions_state_check;
ALTER TABLE projection_versions ADD CONSTRAINT projection_versions_state_check
    CHECK (state IN ('building', 'verified', 'active', 'retired'));
