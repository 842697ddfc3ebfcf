-- emailsvc schema. Idempotent: applied by `flask --app wsgi init-db`, `make run` and `make test`.

CREATE TABLE IF NOT EXISTS api_keys (
    id          bigserial PRIMARY KEY,
    name        text        NOT NULL,
    key_hash    bytea       NOT NULL UNIQUE,  -- SHA-256 of the key; serves the lookup on every request
    key_prefix  text        NOT NULL,         -- first characters, so an operator can tell keys apart
    scopes      text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE IF NOT EXISTS emails (
    id            uuid        PRIMARY KEY,
    api_key_id    bigint      REFERENCES api_keys (id),
    status        text        NOT NULL,
    from_addr     text        NOT NULL,
    to_addrs      text[]      NOT NULL,
    cc_addrs      text[]      NOT NULL DEFAULT '{}',
    bcc_addrs     text[]      NOT NULL DEFAULT '{}',
    reply_to      text,
    subject       text        NOT NULL,
    body          text,
    html          text,
    headers       jsonb       NOT NULL DEFAULT '{}',
    metadata      jsonb       NOT NULL DEFAULT '{}',
    message_id    text        NOT NULL,
    attempts      integer     NOT NULL DEFAULT 0,
    error_message text,
    smtp_response text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    scheduled_at  timestamptz,
    sent_at       timestamptz,
    failed_at     timestamptz,
    delivered_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS email_events (
    id         bigserial   PRIMARY KEY,
    email_id   uuid        NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    type       text        NOT NULL,
    detail     text,
    at         timestamptz NOT NULL DEFAULT now()
);
-- GET /email/logs/<id>: the events of one message, oldest first.
CREATE INDEX IF NOT EXISTS email_events_email_id_idx ON email_events (email_id, id);

-- The reconciler's scans: messages not finished yet, oldest change first.
CREATE INDEX IF NOT EXISTS emails_unfinished_idx ON emails (updated_at, id)
    WHERE status IN ('SCHEDULED', 'PENDING', 'SENDING');

-- Idempotency-Key: one message per (API key, client key) for 24 h; the primary key is what makes
-- concurrent identical requests create one message, not a read-then-write.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    api_key_id   bigint      NOT NULL REFERENCES api_keys (id),
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,  -- SHA-256 of the canonical JSON body
    email_id     uuid        NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, key)
);
-- The reconciler's purge of keys older than 24 h.
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at_idx ON idempotency_keys (created_at);
-- Releasing the key of a message whose enqueue failed.
CREATE INDEX IF NOT EXISTS idempotency_keys_email_id_idx ON idempotency_keys (email_id);
