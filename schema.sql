-- emailsvc schema. Idempotent: applied by `flask --app wsgi init-db`, `make run` and `make test`.

-- Projects: one application's keys, mail, suppressions and webhooks (docs/api.md, "Projects").
CREATE TABLE IF NOT EXISTS projects (
    id         bigserial   PRIMARY KEY,
    name       text        NOT NULL UNIQUE,  -- what the CLI and GET /project call it
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Upgrading a database made before projects: a table without project_id gets one, and every row
-- already in it goes to the project named `default` (created here if missing). The column is added
-- with a constant default, which PostgreSQL stores once in the catalog instead of rewriting the
-- table, so this is instant at any size; the default is dropped at once, so that from then on every
-- insert must name its project. A no-op on a table that has the column.
CREATE OR REPLACE PROCEDURE add_project_id(tab regclass, referenced boolean) LANGUAGE plpgsql AS $$
DECLARE
    fallback bigint;
BEGIN
    IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = tab AND attname = 'project_id' AND NOT attisdropped) THEN
        RETURN;
    END IF;
    INSERT INTO projects (name) VALUES ('default') ON CONFLICT (name) DO NOTHING;
    SELECT id INTO fallback FROM projects WHERE name = 'default';
    EXECUTE format('ALTER TABLE %s ADD COLUMN project_id bigint NOT NULL DEFAULT %s', tab, fallback);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN project_id DROP DEFAULT', tab);
    IF referenced THEN
        EXECUTE format('ALTER TABLE %s ADD FOREIGN KEY (project_id) REFERENCES projects (id)', tab);
    END IF;
END $$;

-- Upgrading: a primary key made before projects gains project_id in front (`columns`: the rest of it).
CREATE OR REPLACE PROCEDURE lead_primary_key_with_project(tab regclass, columns text) LANGUAGE plpgsql AS $$
DECLARE
    pkey name;
BEGIN
    SELECT c.conname INTO pkey FROM pg_constraint c
    WHERE c.conrelid = tab AND c.contype = 'p'
      AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = tab AND a.attname = 'project_id'
                                                   AND a.attnum = ANY(c.conkey));
    IF pkey IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I, ADD PRIMARY KEY (project_id, %s)', tab, pkey, columns);
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS api_keys (
    id          bigserial PRIMARY KEY,
    project_id  bigint      NOT NULL REFERENCES projects (id),  -- every key belongs to exactly one project
    name        text        NOT NULL,
    key_hash    bytea       NOT NULL UNIQUE,  -- SHA-256 of the key; serves the lookup on every request
    key_prefix  text        NOT NULL,         -- first characters, so an operator can tell keys apart
    scopes      text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CALL add_project_id('api_keys', true);
-- Written by the key's look-up at most once a minute (queries/api_keys.py); shown by GET /project.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS last_used_at timestamptz;

CREATE TABLE IF NOT EXISTS emails (
    id            uuid        PRIMARY KEY,
    -- No foreign key: projects are never deleted, the key that made the row is checked already, and
    -- every accepted send would take a lock on one `projects` row that all its sends share.
    project_id    bigint      NOT NULL,
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
CALL add_project_id('emails', false);

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
-- PL/pgSQL, not SQL: a SQL function whose body is a query is not inlined, and PostgreSQL plans that query
-- again at every call; PL/pgSQL plans it once per session. Called by every insert (emails_fill_recipients),
-- that cost ~0.1 ms of PostgreSQL CPU per accepted message (docs/performance.md).
CREATE OR REPLACE FUNCTION email_recipient_entries(
    to_addrs text[], cc_addrs text[], bcc_addrs text[], status text DEFAULT 'pending', attempts integer DEFAULT 0
) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
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
END $$;
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
-- Every new row gets its recipients' entries, however it is inserted: the trigger emails_fill_recipients
-- (under GET /email/logs below, where it also fills the `to` filter's table).
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

-- Per project: a bounce in one application does not stop another's mail (docs/api.md, "Projects").
CREATE TABLE IF NOT EXISTS suppressions (
    project_id bigint      NOT NULL REFERENCES projects (id),
    address    text        NOT NULL,  -- lower-cased addr-spec
    reason     text        NOT NULL,
    email_id   uuid,                  -- the message whose bounce or complaint added it, if any
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, address)  -- serves the check on every send
);
CALL add_project_id('suppressions', true);
CALL lead_primary_key_with_project('suppressions', 'address');
-- GET /suppressions: a project's list, newest first, by cursor.
DROP INDEX IF EXISTS suppressions_created_at_idx;  -- the same without the project, before projects
CREATE INDEX IF NOT EXISTS suppressions_project_created_at_idx
    ON suppressions (project_id, created_at DESC, address DESC);

CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id    bigint      NOT NULL REFERENCES projects (id),  -- receives this project's events only
    url           text        NOT NULL,
    events        text[]      NOT NULL,
    secret        text        NOT NULL,  -- needed in clear to sign; never returned after creation
    created_at    timestamptz NOT NULL DEFAULT now(),
    failing_since timestamptz,           -- first failure since the last success
    disabled_at   timestamptz
);
CALL add_project_id('webhook_endpoints', true);
-- GET /webhooks, and every status change: the project's endpoints.
CREATE INDEX IF NOT EXISTS webhook_endpoints_project_idx ON webhook_endpoints (project_id, created_at, id);

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

-- Every log query reads one project's rows, so every index of the log leads with project_id: a
-- small project's pages and counts cost the same beside a big one as alone (docs/performance.md).
-- The indexes of before projects, the same without it, go, and so does the `from` index on the expression
-- email_addr_spec(from_addr), which PostgreSQL cannot read index-only (replaced by the column below).
DROP INDEX IF EXISTS emails_created_at_id_idx, emails_status_created_at_id_idx, emails_from_created_at_id_idx,
    emails_recipients_idx, emails_sent_at_idx, emails_failed_at_idx, emails_project_from_created_at_id_idx;
-- The sender as the `from` filter compares it. Stored, so its index is read index-only (a count of `from`
-- beside `status` meets the two indexes without reading a log row); computed on insert only, since nothing
-- changes from_addr. Adding it to an existing log rewrites the table once (docs/performance.md).
ALTER TABLE emails ADD COLUMN IF NOT EXISTS sender text GENERATED ALWAYS AS (email_addr_spec(from_addr)) STORED;
-- Both pagination modes (oldest first by offset, newest first by cursor), created_after/before,
-- today's `created` count, and the index-only skip of a deep offset page.
CREATE INDEX IF NOT EXISTS emails_project_created_at_id_idx ON emails (project_id, created_at, id);
-- The `status` filter in either order, without sorting.
CREATE INDEX IF NOT EXISTS emails_project_status_created_at_id_idx ON emails (project_id, status, created_at, id);
-- The `from` filter in either order, without sorting.
CREATE INDEX IF NOT EXISTS emails_project_sender_created_at_id_idx ON emails (project_id, sender, created_at, id);
-- Today's `sent` count; unsent rows stay out of the index.
CREATE INDEX IF NOT EXISTS emails_project_sent_at_idx ON emails (project_id, sent_at) WHERE sent_at IS NOT NULL;
-- Today's `failed` count; rows that did not fail stay out of the index.
CREATE INDEX IF NOT EXISTS emails_project_failed_at_idx ON emails (project_id, failed_at) WHERE failed_at IS NOT NULL;

-- A message's status once it has settled (sent, failed, canceled, or any outcome after sending), NULL while
-- it is scheduled, pending or sending. Settled messages accumulate with the log; unsettled ones are a few
-- minutes' worth, however long the log.
-- Not STRICT, so that PostgreSQL inlines it.
CREATE OR REPLACE FUNCTION email_settled_status(status text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN status NOT IN ('SCHEDULED', 'PENDING', 'SENDING') THEN status END;

-- The `to` filter: one row per distinct recipient (to, cc and bcc, bare and lower-cased) of each message,
-- with the message's project, sender, settled status, created_at and id. Its btree gives the project's messages
-- to an address in either order, and counts them (the exact total, up to 10,000) from the index alone, without
-- reading the log's rows: the GIN index it replaces had to visit one row per match (docs/performance.md).
-- Written when a message is inserted, when it settles or its settled status changes (not while it is pending
-- or sending), and deleted with it (the triggers below).
DO $$
BEGIN
    -- Made before it carried the sender and the status: built again, as on a first upgrade.
    IF (SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()
        AND table_name = 'email_recipient_addresses' AND column_name IN ('sender', 'status')) < 2 THEN
        DROP TABLE IF EXISTS email_recipient_addresses;
        CREATE TABLE email_recipient_addresses (
            project_id bigint      NOT NULL,
            address    text        NOT NULL,
            sender     text        NOT NULL,  -- the message's (emails.sender): `to` with `from` is one index
            status     text,                  -- email_settled_status of the message's: `to` with `status` too
            created_at timestamptz NOT NULL,  -- the message's, so the page needs no other order
            id         uuid        NOT NULL   -- the message's (no foreign key: deleted by the trigger below)
        );
        -- Upgrading: the log's rows so far. Writers wait until init-db commits, so none is inserted between
        -- this copy and the trigger that copies from then on.
        LOCK TABLE emails IN SHARE ROW EXCLUSIVE MODE;
        INSERT INTO email_recipient_addresses (project_id, address, sender, status, created_at, id)
        SELECT e.project_id, a.address, e.sender, email_settled_status(e.status), e.created_at, e.id
        FROM emails e, LATERAL (SELECT DISTINCT email_addr_spec(x)
                                FROM unnest(e.to_addrs || e.cc_addrs || e.bcc_addrs) x) a (address);
    END IF;
END $$;
-- The `to` filter's page in either order, its capped count (index-only) and the skip of an offset page.
CREATE UNIQUE INDEX IF NOT EXISTS email_recipient_addresses_idx
    ON email_recipient_addresses (project_id, address, created_at, id);
-- The same for `to` with `from`, and with a settled status: only the messages matching both, so a rare pair (or
-- none) costs what it matches. An unsettled status is few messages: those are looked up from the log's side.
CREATE INDEX IF NOT EXISTS email_recipient_addresses_sender_idx
    ON email_recipient_addresses (project_id, address, sender, created_at, id);
CREATE INDEX IF NOT EXISTS email_recipient_addresses_status_idx
    ON email_recipient_addresses (project_id, address, status, created_at, id) WHERE status IS NOT NULL;
-- Every new row, however it is inserted (the API, a test, a bulk load): its recipients' entries unless given
-- (docs/delivery.md), and its rows here. One row trigger does both: a second trigger, or one per statement
-- reading a transition table, costs a send more than the GIN index this table replaced (docs/performance.md).
-- Nothing inserts into emails with ON CONFLICT, which would skip a row after this has run. The addresses are
-- spelled out here, not through a function returning their array: PostgreSQL cannot inline one (its
-- ARRAY(SELECT …)) and plans it again on every call.
CREATE OR REPLACE FUNCTION emails_fill_recipients() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.recipients IS NULL THEN
        NEW.recipients := email_recipient_entries(NEW.to_addrs, NEW.cc_addrs, NEW.bcc_addrs);
    END IF;
    INSERT INTO email_recipient_addresses (project_id, address, sender, status, created_at, id)
    SELECT DISTINCT NEW.project_id, email_addr_spec(a), email_addr_spec(NEW.from_addr),
           email_settled_status(NEW.status), NEW.created_at, NEW.id
    FROM unnest(NEW.to_addrs || NEW.cc_addrs || NEW.bcc_addrs) a;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER emails_fill_recipients BEFORE INSERT ON emails
    FOR EACH ROW EXECUTE FUNCTION emails_fill_recipients();
-- A message that settles, or whose settled status changes (a delivery event), carries it to its rows here:
-- once or twice in its life. Claiming, retrying and the other changes of an unsettled message fire nothing
-- (the WHEN is checked without calling the function; it spells out email_settled_status, which a trigger's
-- WHEN would call as a function, not inline: 40 us more on every status change). An AFTER trigger: a BEFORE
-- UPDATE one would make every update compute emails.sender again.
CREATE OR REPLACE FUNCTION emails_settle_recipients() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The addresses as an array, not a subquery: planned as a join (hashed, memoized), that costs 3 times as much.
    UPDATE email_recipient_addresses SET status = email_settled_status(NEW.status)
    WHERE project_id = NEW.project_id
      AND address = ANY(ARRAY(SELECT email_addr_spec(a) FROM unnest(NEW.to_addrs || NEW.cc_addrs || NEW.bcc_addrs) a))
      AND created_at = NEW.created_at AND id = NEW.id;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER emails_settle_recipients AFTER UPDATE OF status ON emails FOR EACH ROW
    WHEN (NEW.status IS DISTINCT FROM OLD.status
          AND NOT (NEW.status IN ('SCHEDULED', 'PENDING', 'SENDING') AND OLD.status IN ('SCHEDULED', 'PENDING', 'SENDING')))
    EXECUTE FUNCTION emails_settle_recipients();
-- A deleted message's rows go in the statement that deletes it (the retention purge, or any DELETE).
CREATE OR REPLACE FUNCTION drop_email_recipient_addresses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM email_recipient_addresses r USING deleted_emails e, unnest(e.to_addrs || e.cc_addrs || e.bcc_addrs) a
    WHERE r.project_id = e.project_id AND r.address = email_addr_spec(a)
      AND r.created_at = e.created_at AND r.id = e.id;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER emails_deleted_drop_recipients AFTER DELETE ON emails REFERENCING OLD TABLE AS deleted_emails
    FOR EACH STATEMENT EXECUTE FUNCTION drop_email_recipient_addresses();
CREATE OR REPLACE FUNCTION clear_email_recipient_addresses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE email_recipient_addresses;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER emails_truncated_clear_recipients AFTER TRUNCATE ON emails
    FOR EACH STATEMENT EXECUTE FUNCTION clear_email_recipient_addresses();
-- Before this table, a GIN index of "<project_id>:<address>" entries served the `to` filter.
DROP INDEX IF EXISTS emails_project_recipients_idx;
DROP FUNCTION IF EXISTS email_project_recipients(bigint, text[], text[], text[]);
DROP FUNCTION IF EXISTS email_recipients(text[], text[], text[]);  -- what both GIN indexes computed

-- Running totals of created, sent and failed mail at the end of each closed 15-minute bucket, so the
-- log's total, a deep offset page and today's counts cost the same at any table size (docs/performance.md).
-- Filled by readers once a bucket is settled (ended 10 minutes ago); created_at, sent_at and failed_at
-- are set to the time of writing, so a settled bucket never changes unless rows are deleted.
-- One series per project. Upgrading keeps the totals: every row they counted moved to `default`.
CREATE TABLE IF NOT EXISTS email_log_counts (
    project_id   bigint      NOT NULL,
    bucket_start timestamptz NOT NULL,  -- the bucket [bucket_start, bucket_start + 15 minutes)
    created      bigint      NOT NULL,  -- the project's rows created before the bucket's end
    sent         bigint      NOT NULL,  -- the project's rows sent before the bucket's end
    failed       bigint      NOT NULL,  -- the project's rows failed before the bucket's end
    PRIMARY KEY (project_id, bucket_start)
);
CALL add_project_id('email_log_counts', false);
CALL lead_primary_key_with_project('email_log_counts', 'bucket_start');
-- A deep offset page: the project's first bucket whose running count passes the offset.
DROP INDEX IF EXISTS email_log_counts_created_idx;  -- the same without the project, before projects
CREATE INDEX IF NOT EXISTS email_log_counts_project_created_idx ON email_log_counts (project_id, created, bucket_start);

-- What deleted rows (the purge of LOG_RETENTION_DAYS, or any DELETE) had added to a project's running
-- totals. The totals themselves never go down: lowering every later bucket would rewrite a year of
-- buckets for each batch of a purge. Readers subtract these instead (queries/log_counts.py), from the
-- buckets that start at or after counts_from, which hold every deleted row that was counted; an older
-- bucket is not used, and what it would have answered is counted from the rows themselves.
CREATE TABLE IF NOT EXISTS email_log_removed (
    project_id  bigint      PRIMARY KEY,
    created     bigint      NOT NULL,  -- deleted rows the running totals counted as created
    sent        bigint      NOT NULL,  -- ... as sent
    failed      bigint      NOT NULL,  -- ... as failed
    counts_from timestamptz NOT NULL   -- the bucket holding the latest counted timestamp of a deleted row
);
-- Runs in the statement that deletes, so totals and today's counts are exact at once, without a refill.
-- Only timestamps before the project's filled edge were counted, so only those are subtracted. The
-- lock makes a fill that is under way finish first (the edge read below then includes its buckets),
-- and one that starts later wait for this transaction and see the rows gone.
CREATE OR REPLACE FUNCTION forget_deleted_emails() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE email_log_counts IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO email_log_removed AS r (project_id, created, sent, failed, counts_from)
    SELECT d.project_id, count(*) FILTER (WHERE d.created_at < x.edge), count(*) FILTER (WHERE d.sent_at < x.edge),
           count(*) FILTER (WHERE d.failed_at < x.edge),
           date_bin('15 minutes', max(greatest(CASE WHEN d.created_at < x.edge THEN d.created_at END,
                                               CASE WHEN d.sent_at < x.edge THEN d.sent_at END,
                                               CASE WHEN d.failed_at < x.edge THEN d.failed_at END)), 'epoch')
    FROM deleted_emails d JOIN (
        SELECT p.project_id, (SELECT max(bucket_start) + interval '15 minutes' FROM email_log_counts c
                              WHERE c.project_id = p.project_id) AS edge
        FROM (SELECT DISTINCT project_id FROM deleted_emails) p
    ) x USING (project_id)
    WHERE d.created_at < x.edge
    GROUP BY d.project_id
    ON CONFLICT (project_id) DO UPDATE SET created = r.created + excluded.created, sent = r.sent + excluded.sent,
        failed = r.failed + excluded.failed, counts_from = greatest(r.counts_from, excluded.counts_from);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS emails_deleted_clear_counts ON emails;  -- before: any deletion cleared every total
CREATE OR REPLACE TRIGGER emails_deleted_keep_counts AFTER DELETE ON emails REFERENCING OLD TABLE AS deleted_emails
    FOR EACH STATEMENT EXECUTE FUNCTION forget_deleted_emails();
-- Emptying the log empties its totals.
CREATE OR REPLACE FUNCTION clear_email_log_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE email_log_counts IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM email_log_counts;
    DELETE FROM email_log_removed;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER emails_truncated_clear_counts AFTER TRUNCATE ON emails
    FOR EACH STATEMENT EXECUTE FUNCTION clear_email_log_counts();

-- Retention (docs/operations.md) ---------------------------------------------------------------
-- When BODY_RETENTION_DAYS deleted the message's body, html and headers; NULL while they are kept.
ALTER TABLE emails ADD COLUMN IF NOT EXISTS content_purged_at timestamptz;
-- The purge of bodies: finished messages whose content is kept, oldest first. A row enters it when it
-- finishes (an update that writes every index anyway), never when it is inserted: accepting pays nothing.
CREATE INDEX IF NOT EXISTS emails_content_kept_idx ON emails (project_id, created_at)
    WHERE content_purged_at IS NULL AND status IN ('SENT', 'DELIVERED', 'BOUNCED', 'COMPLAINED', 'FAILED', 'CANCELED');

-- The reconciler's scans: messages not finished yet (a SENT one with deferred recipients included),
-- oldest change first. It replaces emails_unfinished_idx, which did not cover retry_pending.
DROP INDEX IF EXISTS emails_unfinished_idx;
CREATE INDEX IF NOT EXISTS emails_waiting_idx ON emails (updated_at, id)
    WHERE status IN ('SCHEDULED', 'PENDING', 'SENDING') OR retry_pending;

-- Idempotency-Key: one message per (API key, client key) for 24 h; the primary key is what makes
-- concurrent identical requests create one message, not a read-then-write.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    project_id   bigint      NOT NULL,  -- the key's project (no foreign key: see emails)
    api_key_id   bigint      NOT NULL REFERENCES api_keys (id),
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,  -- SHA-256 of the canonical JSON body
    email_id     uuid        NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, key)
);
CALL add_project_id('idempotency_keys', false);
-- The reconciler's purge of keys older than 24 h.
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at_idx ON idempotency_keys (created_at);
-- Releasing the key of a message whose enqueue failed.
CREATE INDEX IF NOT EXISTS idempotency_keys_email_id_idx ON idempotency_keys (email_id);
-- Every message the key created, in the request's order (a batch has many; email_id is the first).
-- NULL on a key recorded before batches existed: it created email_id alone.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS email_ids uuid[];

-- Templates (docs/api.md, "Templates") ----------------------------------------------------------
-- One row per version of a project's template. DELETE marks every version of the name deleted; a
-- name created again continues the numbering, so a LOG's {"name", "version"} never means two texts.
CREATE TABLE IF NOT EXISTS mail_templates (
    project_id bigint      NOT NULL REFERENCES projects (id),
    name       text        NOT NULL,
    version    integer     NOT NULL,
    subject    text        NOT NULL,
    body       text,
    html       text,
    variables  text[]      NOT NULL,  -- the names the three parts use, sorted
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    PRIMARY KEY (project_id, name, version)  -- a version by name, the latest (backwards), the next number
);
-- GET /templates: the project's live templates.
CREATE INDEX IF NOT EXISTS mail_templates_live_idx ON mail_templates (project_id, name, version)
    WHERE deleted_at IS NULL;

-- Lifecycle (docs/api.md, "Cancel, reschedule, resend") ------------------------------------------
-- The template and version a message was rendered from ({"name", "version"}), or NULL.
ALTER TABLE emails ADD COLUMN IF NOT EXISTS template jsonb;
-- The message this one is a resend of, or NULL.
ALTER TABLE emails ADD COLUMN IF NOT EXISTS resent_from uuid;
-- When the retention purge emptied the message's content; a purged message cannot be resent.
ALTER TABLE emails ADD COLUMN IF NOT EXISTS content_purged_at timestamptz;
-- email.canceled is new: an endpoint subscribed to every event before it existed receives it too.
UPDATE webhook_endpoints SET events = events || '{email.canceled}'
WHERE NOT 'email.canceled' = ANY(events)
  AND events @> '{email.sent,email.failed,email.delivered,email.bounced,email.complained,email.deferred,email.recipient_failed}';

-- Attachments (docs/api.md, "Attachments") -------------------------------------------------------
-- What the log shows of each attachment, in order: filename, content_type, size, content_id and the
-- sha256 (hex) of its content. Never the bytes: lists, status changes and webhooks read only this.
ALTER TABLE emails ADD COLUMN IF NOT EXISTS attachments jsonb NOT NULL DEFAULT '[]';
-- The bytes, once per project and content (SHA-256), however many messages carry them; never shared
-- across projects. Only the worker reads them, when it builds a message; a purge of content deletes
-- rows here (the log keeps its metadata).
CREATE TABLE IF NOT EXISTS attachment_contents (
    project_id bigint      NOT NULL,  -- no foreign key: see emails
    sha256     bytea       NOT NULL,
    content    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, sha256)
);
-- Which message carries which content, at which position: what a purge asks before deleting content.
CREATE TABLE IF NOT EXISTS email_attachments (
    email_id   uuid   NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    position   integer NOT NULL,
    project_id bigint NOT NULL,
    sha256     bytea  NOT NULL,
    PRIMARY KEY (email_id, position)
);
CREATE INDEX IF NOT EXISTS email_attachments_content_idx ON email_attachments (project_id, sha256);
