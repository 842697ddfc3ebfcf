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

-- GET /email/logs ------------------------------------------------------------------------------
-- The bare, lower-cased address of "Name <addr>" or "addr": what the `from` and `to` filters compare.
CREATE OR REPLACE FUNCTION email_addr_spec(address text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN lower(coalesce(substring(address FROM '<([^<>]*)>$'), address));
-- Every recipient of a message (to, cc and bcc) as bare, lower-cased addresses: the `to` filter.
CREATE OR REPLACE FUNCTION email_recipients(to_addrs text[], cc_addrs text[], bcc_addrs text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY(SELECT email_addr_spec(a) FROM unnest(to_addrs || cc_addrs || bcc_addrs) AS a);

-- Both pagination modes (oldest first by offset, newest first by cursor), created_after/before,
-- today's `created` count, and the index-only skip of a deep offset page.
CREATE INDEX IF NOT EXISTS emails_created_at_id_idx ON emails (created_at, id);
-- The `status` filter in either order, without sorting.
CREATE INDEX IF NOT EXISTS emails_status_created_at_id_idx ON emails (status, created_at, id);
-- The `from` filter in either order, without sorting.
CREATE INDEX IF NOT EXISTS emails_from_created_at_id_idx ON emails (email_addr_spec(from_addr), created_at, id);
-- The `to` filter: messages having a given address among their recipients.
CREATE INDEX IF NOT EXISTS emails_recipients_idx ON emails USING gin (email_recipients(to_addrs, cc_addrs, bcc_addrs));
-- Today's `sent` count; unsent rows stay out of the index.
CREATE INDEX IF NOT EXISTS emails_sent_at_idx ON emails (sent_at) WHERE sent_at IS NOT NULL;
-- Today's `failed` count; rows that did not fail stay out of the index.
CREATE INDEX IF NOT EXISTS emails_failed_at_idx ON emails (failed_at) WHERE failed_at IS NOT NULL;

-- Running totals of created, sent and failed mail at the end of each closed 15-minute bucket, so the
-- log's total, a deep offset page and today's counts cost the same at any table size (docs/performance.md).
-- Filled by readers once a bucket is settled (ended 10 minutes ago); created_at, sent_at and failed_at
-- are set to the time of writing, so a settled bucket never changes unless rows are deleted.
CREATE TABLE IF NOT EXISTS email_log_counts (
    bucket_start timestamptz PRIMARY KEY,  -- the bucket [bucket_start, bucket_start + 15 minutes)
    created      bigint      NOT NULL,     -- rows created before the bucket's end
    sent         bigint      NOT NULL,     -- rows sent before the bucket's end
    failed       bigint      NOT NULL      -- rows failed before the bucket's end
);
-- A deep offset page: the first bucket whose running count passes the offset.
CREATE INDEX IF NOT EXISTS email_log_counts_created_idx ON email_log_counts (created, bucket_start);

-- Deleting log rows invalidates every running total after them; the next reader refills from scratch.
-- The lock makes a refill that is under way finish first, and one that starts later see the deletion.
CREATE OR REPLACE FUNCTION clear_email_log_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE email_log_counts IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM email_log_counts;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER emails_deleted_clear_counts AFTER DELETE OR TRUNCATE ON emails
    FOR EACH STATEMENT EXECUTE FUNCTION clear_email_log_counts();
