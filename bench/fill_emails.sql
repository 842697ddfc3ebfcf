-- Fill `emails` with ROWS synthetic messages of the project PROJECT_ID spread evenly over the 90 days
-- before now() (run by bench/logs.py through psycopg2, once per project). Statuses follow a plausible
-- mix for a transactional sender; PENDING, SENDING and SCHEDULED appear only in the last hour, where
-- mail can still be in flight. The recipients' entries are given, as the trigger that would derive them
-- writes them (bench/logs.py drops it for the load).
INSERT INTO emails (id, project_id, status, from_addr, to_addrs, cc_addrs, subject, body, metadata, message_id,
                    attempts, error_message, created_at, sent_at, failed_at, delivered_at, updated_at, recipients)
SELECT id, %(project_id)s, status, from_addr, to_addrs, cc_addrs, subject, body, metadata, '<' || id || '@example.com>',
       attempts, error_message, created_at,
       CASE WHEN status IN ('SENT', 'DELIVERED', 'BOUNCED', 'COMPLAINED') THEN created_at + interval '2 seconds' END,
       CASE WHEN status = 'FAILED' THEN created_at + interval '6 minutes' END,
       CASE WHEN status IN ('DELIVERED', 'COMPLAINED') THEN created_at + interval '9 seconds' END,
       created_at, email_recipient_entries(to_addrs, cc_addrs, '{}')
FROM (
    SELECT gen_random_uuid() AS id, created_at, r,
           CASE WHEN created_at > now() - interval '1 hour' AND r < 0.02 THEN 'PENDING'
                WHEN created_at > now() - interval '1 hour' AND r < 0.03 THEN 'SENDING'
                WHEN created_at > now() - interval '1 hour' AND r < 0.035 THEN 'SCHEDULED'
                WHEN r < 0.05 THEN 'FAILED'
                WHEN r < 0.065 THEN 'BOUNCED'
                WHEN r < 0.067 THEN 'COMPLAINED'
                WHEN r < 0.60 THEN 'DELIVERED'
                ELSE 'SENT' END AS status,
           (ARRAY['Shop <shop@example.com>', 'Billing <billing@example.com>', 'no-reply@example.com',
                  'Alerts <alerts@example.net>', 'Support <support@example.org>'])[1 + mod(i, 5)] AS from_addr,
           ARRAY['Customer ' || mod(i * 7919, 200000) || ' <user' || mod(i * 7919, 200000) || '@mail'
                 || mod(i, 40) || '.example>'] AS to_addrs,
           CASE WHEN mod(i, 20) = 0 THEN ARRAY['audit@example.com'] ELSE '{}' END AS cc_addrs,
           'Your order #' || i || ' has shipped' AS subject,
           'Hello, your order #' || i || ' is on its way. Track it at https://shop.example.com/t/' || md5(i::text)
               || E'\nThank you for shopping with us.' AS body,
           jsonb_build_object('order_id', i::text) AS metadata,
           CASE WHEN r < 0.05 THEN 4 ELSE 1 END AS attempts,
           CASE WHEN r < 0.05 THEN '550 5.1.1 <user@mail.example>: Recipient address rejected' END AS error_message
    FROM (
        SELECT i, random() AS r,
               now() - (%(rows)s - i) * (interval '90 days' / %(rows)s) - random() * (interval '90 days' / %(rows)s) AS created_at
        FROM generate_series(1::bigint, %(rows)s) AS i
    ) g
) s;
