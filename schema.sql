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
