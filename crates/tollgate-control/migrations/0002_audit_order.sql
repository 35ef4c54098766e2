-- Two changes in the same millisecond kept no order: an audit entry now carries the records'
-- version its change moved to, which one change at a time moves, across processes too.
ALTER TABLE tg_audit ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;

CREATE INDEX tg_audit_seq ON tg_audit (seq);
