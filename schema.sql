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

-- Per-recipient outcomes (docs/delivery.md) -----------------------------------------------------
-- The recipients of a message as the log keeps them: one entry per address of to, cc and bcc, in that
-- order, with the bare address the SMTP envelope uses. New messages start `pending`; the backfill
-- below derives the status of older rows from their message's status.
CREATE OR REPLACE FUNCTION email_recipient_entries(
    to_addrs text[], cc_addrs text[], bcc_addrs text[], status text DEFAULT 'pending', attempts integer DEFAULT 0
) RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'address', coalesce(substring(a.address FROM '<([^<>]*)>$'), a.address), 'field', a.field,
               'status', status, 'attempts', attempts, 'smtp_code', NULL, 'enhanced_status', NULL,
               'response', NULL, 'updated_at', NULL
           ) ORDER BY a.field_order, a.n), '[]')
    FROM (
        SELECT 'to' AS field, 1 AS field_order, x.address, x.n FROM unnest(to_addrs) WITH ORDINALITY x(address, n)
        UNION ALL SELECT 'cc', 2, x.address, x.n FROM unnest(cc_addrs) WITH ORDINALITY x(address, n)
        UNION ALL SELECT 'bcc', 3, x.address, x.n FROM unnest(bcc_addrs) WITH ORDINALITY x(address, n)
    ) a
);
-- Added once, with a backfill of the rows written before per-recipient outcomes existed.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'emails' AND column_name = 'recipients') THEN
        ALTER TABLE emails ADD COLUMN recipients jsonb;
        UPDATE emails SET recipients = email_recipient_entries(
            to_addrs, cc_addrs, bcc_addrs,
            CASE status WHEN 'SENT' THEN 'accepted' WHEN 'DELIVERED' THEN 'delivered' WHEN 'BOUNCED' THEN 'bounced'
                        WHEN 'COMPLAINED' THEN 'complained' WHEN 'FAILED' THEN 'refused' ELSE 'pending' END,
            CASE WHEN status IN ('PENDING', 'SCHEDULED', 'SENDING') THEN 0 ELSE attempts END);
        ALTER TABLE emails ALTER COLUMN recipients SET NOT NULL;
    END IF;
END $$;
-- Every new row gets its recipients' entries, however it is inserted (the API, a test, a bulk load).
CREATE OR REPLACE FUNCTION emails_fill_recipients() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.recipients := email_recipient_entries(NEW.to_addrs, NEW.cc_addrs, NEW.bcc_addrs);
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER emails_fill_recipients BEFORE INSERT ON emails
    FOR EACH ROW WHEN (NEW.recipients IS NULL) EXECUTE FUNCTION emails_fill_recipients();
-- The classified failure of the latest attempt: smtp_code, enhanced_status, retryable, stage, message.
ALTER TABLE emails ADD COLUMN IF NOT EXISTS last_error jsonb;
-- Some recipient is deferred and will be tried again; on a SENT message, this is what its job retries.
ALTER TABLE emails ADD COLUMN IF NOT EXISTS retry_pending boolean NOT NULL DEFAULT false;

-- Delivery truth: inbound delivery events, the suppression list, outbound webhooks.

-- A delivery event's fingerprint; NULL for the service's own events.
ALTER TABLE email_events ADD COLUMN IF NOT EXISTS dedupe_key bytea;
-- POST /email/webhooks/delivery: a replayed event is recorded once.
CREATE UNIQUE INDEX IF NOT EXISTS email_events_dedupe_idx
    ON email_events (email_id, dedupe_key) WHERE dedupe_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS suppressions (
    address    text        PRIMARY KEY,  -- lower-cased addr-spec; serves the check on every send
    reason     text        NOT NULL,
    email_id   uuid,                     -- the message whose bounce or complaint added it, if any
    created_at timestamptz NOT NULL DEFAULT now()
);
-- GET /suppressions: newest first, by cursor.
CREATE INDEX IF NOT EXISTS suppressions_created_at_idx ON suppressions (created_at DESC, address DESC);

CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    url           text        NOT NULL,
    events        text[]      NOT NULL,
    secret        text        NOT NULL,  -- needed in clear to sign; never returned after creation
    created_at    timestamptz NOT NULL DEFAULT now(),
    failing_since timestamptz,           -- first failure since the last success
    disabled_at   timestamptz
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),  -- the webhook-id, kept on redelivery
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    email_id        uuid        NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    type            text        NOT NULL,
    snapshot        jsonb       NOT NULL,  -- the log as the change left it, without bodies
    state           text        NOT NULL DEFAULT 'pending',  -- pending, queued, sending, succeeded, failed
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),  -- when due; a lease while queued or sending
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- The dispatcher: deliveries that are due.
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_idx
    ON webhook_deliveries (next_attempt_at) WHERE state IN ('pending', 'queued', 'sending');
-- GET /webhooks/<id>/deliveries: newest first, by cursor.
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS webhook_attempts (
    id          bigserial   PRIMARY KEY,
    delivery_id uuid        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    status_code integer,  -- NULL when the receiver gave no HTTP answer
    error       text,
    response    text,     -- the start of the receiver's answer, for debugging
    duration_ms integer   NOT NULL
);
-- GET /webhooks/<id>/deliveries: the attempts of a page of deliveries, oldest first.
CREATE INDEX IF NOT EXISTS webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, id);

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

-- The reconciler's scans: messages not finished yet (a SENT one with deferred recipients included),
-- oldest change first. It replaces emails_unfinished_idx, which did not cover retry_pending.
DROP INDEX IF EXISTS emails_unfinished_idx;
CREATE INDEX IF NOT EXISTS emails_waiting_idx ON emails (updated_at, id)
    WHERE status IN ('SCHEDULED', 'PENDING', 'SENDING') OR retry_pending;

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
