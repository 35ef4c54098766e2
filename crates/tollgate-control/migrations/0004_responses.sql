-- Stored Responses API answers (`store: true`): the Response object as the caller got it, and the
-- input items it answered, so a later call naming it (`previous_response_id`) continues the
-- conversation. Kept per owner (a key, under its tenant): another key's id is not found.
CREATE TABLE tg_responses (
    id TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    response TEXT NOT NULL,
    input_items TEXT NOT NULL,
    PRIMARY KEY (owner, id)
);

CREATE INDEX tg_responses_created ON tg_responses (created_at);
