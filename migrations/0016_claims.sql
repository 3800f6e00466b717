-- Text grounding (app/src/domain/claims.rs): every number and name an answer writes,
-- checked against the evidence it was given.
--
-- `claims_json`: the claims of an insight or a conversation turn's answer, with their
-- verdicts (JSON array; NULL on rows from before claims were checked).
ALTER TABLE insights ADD COLUMN claims_json TEXT;
ALTER TABLE conversation_turns ADD COLUMN claims_json TEXT;

-- The lineage's count: claims read in the reply, and how many the evidence does not
-- support (NULL when the call had no reply).
ALTER TABLE agent_calls ADD COLUMN claims_checked BIGINT;
ALTER TABLE agent_calls ADD COLUMN claims_unsupported BIGINT;
