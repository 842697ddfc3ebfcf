"""The bare delivery loop for `make bench`: claim a row, send it over one smtplib connection, UPDATE.

No queue, no events, no retries: the floor of what delivering a logged message costs.
Usage: python bench/bare_delivery.py DATABASE_URL SMTP_PORT
"""

import smtplib
import sys
from email.message import EmailMessage

import psycopg2

CLAIM = """UPDATE emails SET status = 'SENDING' WHERE id = (
             SELECT id FROM emails WHERE status = 'PENDING' LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING id, from_addr, to_addrs, subject, body, message_id"""


def main(url, port):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    smtp = smtplib.SMTP("127.0.0.1", int(port))
    with conn.cursor() as cur:
        while True:
            cur.execute(CLAIM)
            row = cur.fetchone()
            if row is None:
                break
            email_id, sender, to, subject, body, message_id = row
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = sender, ", ".join(to), subject, message_id
            msg.set_content(body)
            smtp.send_message(msg)
            cur.execute("UPDATE emails SET status = 'SENT', sent_at = now() WHERE id = %s", (email_id,))
    smtp.quit()


if __name__ == "__main__":
    main(*sys.argv[1:3])
