"""GET /email/logs: both pagination modes, filters, today's counts, and every way to get a 400."""

import threading
import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg2
import pytest
from conftest import make_key, send_ok, wait_for
from psycopg2.extras import execute_values

from emailsvc import create_app

NOW = datetime.now(UTC)
DHAKA = ZoneInfo("Asia/Dhaka")


def insert_logs(database, *rows):
    """Insert log rows directly (created_at and friends as given) and return their ids in order.

    Rows go to the project named by their `project` (default: `default`, which the `auth` key belongs to).
    """
    ids = [uuid.uuid4() for _ in rows]
    values = [
        (
            str(i),
            row.get("project", "default"),
            row.get("status", "SENT"),
            row.get("from", "Shop <shop@example.com>"),
            row.get("to", ["Alice <alice@example.com>"]),
            row.get("cc", []),
            row.get("bcc", []),
            "Hello",
            f"<{i}@example.com>",
            row.get("created_at", NOW),
            row.get("sent_at"),
            row.get("failed_at"),
        )
        for i, row in zip(ids, rows, strict=True)
    ]
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        execute_values(
            cur,
            """INSERT INTO emails (id, project_id, status, from_addr, to_addrs, cc_addrs, bcc_addrs, subject,
                                   message_id, created_at, sent_at, failed_at) VALUES %s""",
            values,
            template="(%s::uuid, (SELECT id FROM projects WHERE name = %s), %s, %s, %s::text[], %s::text[], %s::text[],"
            " %s, %s, %s, %s, %s)",
        )
    conn.close()
    return [str(i) for i in ids]


def run_sql(database, sql, params=None):
    """Run one statement on a connection of its own and return its rows, if any."""
    conn = psycopg2.connect(database)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def ordered_ids(database, direction="ASC"):
    rows = run_sql(database, f"SELECT id::text FROM emails ORDER BY created_at {direction}, id {direction}")
    return [row[0] for row in rows]


def get_logs(client, auth, **params):
    response = client.get("/email/logs", query_string=params, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def walk_cursor(client, auth, between_pages=lambda: None, **params):
    """Follow next_cursor from the first page to the last; return every id seen, in order."""
    seen, cursor = [], None
    while True:
        body = get_logs(client, auth, **params, **({"cursor": cursor} if cursor else {}))
        seen += [item["id"] for item in body["items"]]
        cursor = body["pagination"]["next_cursor"]
        if cursor is None:
            return seen
        between_pages()


def walk_offset(client, auth, **params):
    """Read offset pages from page 1 until one comes back empty; return every id seen, in order."""
    seen, page = [], 1
    while items := get_logs(client, auth, page=page, **params)["items"]:
        seen += [item["id"] for item in items]
        page += 1
    return seen


def spread(count, days, end=NOW - timedelta(hours=1)):
    """`count` created_at values spread evenly over `days` days up to `end`, with some exact ties."""
    step = timedelta(days=days) / count
    return [end - step * (i - i % 3) for i in range(count)]  # every three share one timestamp


def test_needs_a_key_with_the_read_scope(client, app):
    assert client.get("/email/logs").status_code == 401
    send_only = {"X-API-Key": make_key(app, scopes=["send"])}
    assert client.get("/email/logs", headers=send_only).get_json()["error"]["code"] == "forbidden"


def test_cursor_mode_is_newest_first_with_ties_broken_by_id(client, auth, database):
    tied = NOW - timedelta(minutes=5)
    insert_logs(database, *[{"created_at": tied}] * 5, {"created_at": tied - timedelta(seconds=1)}, {})
    body = get_logs(client, auth, limit=100)
    assert [item["id"] for item in body["items"]] == ordered_ids(database, "DESC")
    assert body["pagination"] == {"limit": 100, "next_cursor": None}


def test_offset_mode_is_oldest_first_with_the_total(client, auth, database):
    insert_logs(database, *[{"created_at": at} for at in spread(25, days=2)])
    body = get_logs(client, auth, page=2, limit=10)
    assert [item["id"] for item in body["items"]] == ordered_ids(database)[10:20]
    assert body["pagination"] == {"page": 2, "limit": 10, "total": 25, "total_pages": 3, "total_exact": True}
    assert get_logs(client, auth, page=4, limit=10)["items"] == []


def test_items_are_whole_logs(client, auth, database):
    insert_logs(database, {"to": ["Bob <bob@example.com>"], "cc": ["c@example.com"]})
    (item,) = get_logs(client, auth)["items"]
    assert item["to"] == ["Bob <bob@example.com>"] and item["cc"] == ["c@example.com"] and item["bcc"] == []
    assert item["from"] == "Shop <shop@example.com>" and item["status"] == "SENT"
    assert item["created_at"].endswith("+00:00") and item["message_id"] == f"<{item['id']}@example.com>"


def test_a_cursor_walk_over_ties_yields_every_row_once(client, auth, database):
    insert_logs(database, *[{"created_at": NOW - timedelta(minutes=1)}] * 7, {})
    assert walk_cursor(client, auth, limit=2) == ordered_ids(database, "DESC")


def test_a_cursor_walk_yields_every_row_once_while_mail_is_being_sent(client, auth, database):
    insert_logs(database, *[{"created_at": at} for at in spread(12, days=1)])
    before = ordered_ids(database, "DESC")

    def send_one():
        body = {"to": "new@example.com", "subject": "Meanwhile", "body": "A newer message"}
        assert client.post("/email/send", json=body, headers=auth).status_code == 201

    assert walk_cursor(client, auth, between_pages=send_one, limit=5) == before
    assert len(ordered_ids(database)) == 12 + 2  # two pages were followed by a send


def test_offset_and_cursor_modes_see_the_same_rows(client, auth, database):
    insert_logs(database, *[{"created_at": at} for at in spread(40, days=20)], *[{}] * 3)
    oldest_first = walk_offset(client, auth, limit=7)
    assert oldest_first == ordered_ids(database)
    assert walk_cursor(client, auth, limit=7) == oldest_first[::-1]
    assert walk_offset(client, auth, limit=7) == oldest_first  # again, now that the counts are settled


@pytest.mark.parametrize("fill_rows", [100_000, 2], ids=["one fill", "many small fills"])
def test_deep_offset_pages_and_the_total_stay_exact_as_rows_come_and_go(client, auth, database, monkeypatch, fill_rows):
    monkeypatch.setattr("emailsvc.queries.log_counts.FILL_ROWS", fill_rows)
    insert_logs(database, *[{"created_at": at} for at in spread(30, days=40)])
    assert walk_offset(client, auth, limit=4) == ordered_ids(database)
    insert_logs(database, *[{}] * 2)
    assert get_logs(client, auth, page=1)["pagination"]["total"] == 32
    run_sql(database, "DELETE FROM emails WHERE id IN (SELECT id FROM emails ORDER BY created_at LIMIT 5)")
    assert get_logs(client, auth, page=1, limit=4)["pagination"]["total"] == 27
    assert walk_offset(client, auth, limit=4) == ordered_ids(database)


@pytest.mark.parametrize(
    "params, limit, page",
    [
        ({}, 10, None),
        ({"limit": "0"}, 1, None),
        ({"limit": "-3"}, 1, None),
        ({"limit": "101"}, 100, None),
        ({"limit": "9" * 40}, 100, None),
        ({"limit": " 5 "}, 5, None),
        ({"page": "0"}, 10, 1),
        ({"page": "-2", "limit": "1000"}, 100, 1),
        ({"page": "9" * 40}, 10, 2**31 - 1),
    ],
)
def test_out_of_range_numbers_are_clamped(client, auth, database, params, limit, page):
    insert_logs(database, *[{}] * 3)
    body = get_logs(client, auth, **params)
    assert body["pagination"]["limit"] == limit
    assert body["pagination"].get("page") == page
    assert len(body["items"]) == (0 if page and page > 1 else min(limit, 3))


def a_cursor(client, auth, database):
    insert_logs(database, {}, {})
    return get_logs(client, auth, limit=1)["pagination"]["next_cursor"]


def tampered(cursor):
    return cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]


@pytest.mark.parametrize(
    "params, named",
    [
        ({"page": "two"}, "page"),
        ({"page": "1.5"}, "page"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "é☃"}, "cursor"),
        ({"cursor": "AAAA" * 11}, "cursor"),
        ({"cursor": tampered}, "cursor"),
        ({"cursor": lambda c: c + "AAAA"}, "cursor"),
        ({"cursor": lambda c: c, "page": "1"}, "cursor"),
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
        ({"tz": "America"}, "tz"),
        ({"tz": "../../../etc/passwd"}, "tz"),
        ({"status": "LOST"}, "status"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2026-13-01"}, "created_before"),
        ({"to": "not-an-address"}, "to"),
        ({"from": "a@b@c"}, "from"),
        ({"sort": "desc"}, "sort"),
        ({"limit": ["1", "2"]}, "limit"),
    ],
)
def test_malformed_parameters_are_400_invalid_parameter_naming_the_parameter(client, auth, database, params, named):
    cursor = a_cursor(client, auth, database)
    params = {name: value(cursor) if callable(value) else value for name, value in params.items()}
    response = client.get("/email/logs", query_string=params, headers=auth)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter"
    assert named in error["details"]


def test_an_empty_parameter_is_read_as_absent(client, auth):
    ids = [send_ok(client, auth, subject=f"m{n}") for n in range(3)]
    empty = {name: "" for name in ("page", "limit", "cursor", "status", "to", "from", "created_after",
                                   "created_before", "tz")}  # fmt: skip
    response = client.get("/email/logs", query_string=empty, headers=auth)
    assert response.status_code == 200
    body = response.get_json()
    assert [item["id"] for item in body["items"]] == ids[::-1]  # cursor mode, newest first, unfiltered
    assert body["pagination"] == {"limit": 10, "next_cursor": None} and body["today"]["timezone"] == "UTC"
    repeated = client.get("/email/logs?status=&status=SENT&status=", headers=auth)
    assert repeated.status_code == 200  # one value given, however many empty ones beside it


FILTERED = [
    # Bob twice in one message: the `to` filter finds it once.
    {
        "status": "FAILED",
        "to": ["Bob <Bob@Example.com>"],
        "cc": ["bob@example.com"],
        "created_at": NOW - timedelta(days=3),
    },
    {"status": "SENT", "to": ["alice@example.com"], "cc": ["bob@example.com"], "created_at": NOW - timedelta(days=2)},
    {
        "status": "SENT",
        "to": ["carol@example.com"],
        "bcc": ["bob@example.com"],
        "from": "billing@example.com",
        "created_at": NOW - timedelta(hours=1),
    },
    {"status": "FAILED", "to": ["carol@example.com"], "from": "Billing <Billing@example.com>"},
]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"status": "FAILED"}, [0, 3]),
        ({"status": "sent"}, [1, 2]),
        ({"status": "DELIVERED"}, []),
        ({"to": "bob@example.com"}, [0, 1, 2]),
        ({"to": "BOB <bob@EXAMPLE.com>"}, [0, 1, 2]),
        ({"from": "billing@example.com"}, [2, 3]),
        ({"created_after": (NOW - timedelta(days=2)).isoformat()}, [1, 2, 3]),
        ({"created_before": (NOW - timedelta(days=2)).isoformat()}, [0]),
        ({"created_after": (NOW - timedelta(days=4)).date().isoformat()}, [0, 1, 2, 3]),
        ({"created_before": (NOW - timedelta(days=1)).astimezone(DHAKA).isoformat().replace("+", " ")}, [0, 1]),
        ({"status": "FAILED", "to": "carol@example.com"}, [3]),
        ({"status": "FAILED", "from": "billing@example.com"}, [3]),
        ({"status": "SENT", "from": "billing@example.com", "to": "bob@example.com"}, [2]),
        ({"from": "billing@example.com", "to": "bob@example.com"}, [2]),
        ({"from": "billing@example.com", "to": "alice@example.com"}, []),
        ({"to": "bob@example.com", "created_after": (NOW - timedelta(days=2, hours=1)).isoformat()}, [1, 2]),
        (
            {
                "to": "bob@example.com",
                "status": "SENT",
                "created_after": (NOW - timedelta(days=2, hours=1)).isoformat(),
                "created_before": (NOW - timedelta(days=1)).isoformat(),
            },
            [1],
        ),
    ],
)
# Where two indexes meet (`status` beside `to` or `from`): walked side by side, or the rarer read alone and each
# entry looked up in the other; which one is read alone follows the planner's estimates.
@pytest.mark.parametrize("rare_side", [float("inf"), 1], ids=["side by side", "the rarer alone"])
def test_filters_alone_and_combined_in_both_modes(client, auth, database, monkeypatch, rare_side, params, expected):
    monkeypatch.setattr("emailsvc.queries.logs.RARE_SIDE", rare_side)
    ids = insert_logs(database, *FILTERED)
    wanted = [ids[i] for i in expected]
    assert walk_offset(client, auth, limit=1, **params) == wanted
    assert walk_cursor(client, auth, limit=1, **params) == wanted[::-1]
    assert get_logs(client, auth, page=1, **params)["pagination"]["total"] == len(wanted)


def test_a_filtered_total_beyond_the_exact_limit_is_an_estimate_and_says_so(client, auth, database):
    run_sql(
        database,
        """INSERT INTO emails (id, project_id, status, from_addr, to_addrs, subject, message_id, created_at)
           SELECT gen_random_uuid(), (SELECT id FROM projects WHERE name = 'default'), 'FAILED', 'a@example.com',
                  '{b@example.com}', 's', '<m>', now() - i * interval '1 second' FROM generate_series(1, 10001) AS i;
           ANALYZE emails; ANALYZE email_recipient_addresses""",
    )
    for params in ({"status": "FAILED"}, {"to": "b@example.com"}, {"to": "b@example.com", "status": "FAILED"}):
        filtered = get_logs(client, auth, page=1, **params)["pagination"]
        assert filtered["total_exact"] is False and filtered["total"] >= 10001
        assert filtered["total_pages"] == -(-filtered["total"] // 10)
    everything = get_logs(client, auth, page=1)["pagination"]
    assert everything["total_exact"] is True and everything["total"] == 10001


@pytest.mark.parametrize("rare_side", [float("inf"), 1], ids=["side by side", "the rarer alone"])
def test_status_beside_another_filter_counts_exactly_up_to_a_lower_limit(
    client, auth, database, monkeypatch, rare_side
):
    monkeypatch.setattr("emailsvc.queries.logs.RARE_SIDE", rare_side)
    # 1,002 messages to b@example.com from a@example.com, all but the newest FAILED.
    run_sql(
        database,
        """INSERT INTO emails (id, project_id, status, from_addr, to_addrs, subject, message_id, created_at)
           SELECT gen_random_uuid(), (SELECT id FROM projects WHERE name = 'default'),
                  CASE WHEN i = 1 THEN 'SENT' ELSE 'FAILED' END, 'A <a@example.com>', '{b@example.com}', 's', '<m>',
                  %s - i * interval '1 second' FROM generate_series(1, 1002) AS i;
           ANALYZE emails; ANALYZE email_recipient_addresses""",
        (NOW,),
    )
    since, until = (NOW - timedelta(days=1)).isoformat(), (NOW + timedelta(days=1)).isoformat()
    over_the_limit = [
        {"status": "failed", "from": "a@example.com", "created_after": since},  # 1,001 where two indexes meet
        {"to": "b@example.com", "from": "a@example.com", "status": "FAILED"},
    ]
    for params in over_the_limit:
        over = get_logs(client, auth, page=1, **params)["pagination"]
        assert over["total_exact"] is False and over["total"] >= 1001
        assert over["total_pages"] == -(-over["total"] // 10)
    last_thousand = (NOW - timedelta(seconds=1001.5)).isoformat()
    exact = [
        ({"status": "FAILED", "from": "a@example.com", "created_after": last_thousand}, 1000),  # up to 1,000
        ({"to": "b@example.com", "from": "a@example.com", "status": "SENT"}, 1),
        ({"to": "b@example.com", "status": "SENDING"}, 0),
        ({"to": "b@example.com", "from": "a@example.com"}, 1002),  # one index: exact up to 10,000
        ({"to": "b@example.com", "status": "FAILED"}, 1001),
        ({"to": "b@example.com"}, 1002),  # one filter, with or without the date range: exact up to 10,000
        ({"from": "a@example.com", "created_after": since, "created_before": until}, 1002),
    ]
    for params, total in exact:
        pagination = get_logs(client, auth, page=1, **params)["pagination"]
        assert (pagination["total"], pagination["total_exact"]) == (total, True), params


@pytest.mark.parametrize("rare_side", [float("inf"), 1], ids=["side by side", "the rarer alone"])
def test_the_to_filter_follows_a_message_through_its_statuses(client, auth, database, monkeypatch, rare_side):
    # `to` with a settled status reads the recipients' own copy of it; with an unsettled one, the log's.
    monkeypatch.setattr("emailsvc.queries.logs.RARE_SIDE", rare_side)
    (message,) = insert_logs(database, {"status": "PENDING", "to": ["Bob <bob@example.com>"], "from": "a@example.com"})
    statuses = ("PENDING", "SENDING", "SENT", "FAILED", "DELIVERED", "COMPLAINED")
    for status in ("SENDING", "SENT", "DELIVERED", "COMPLAINED"):
        run_sql(database, "UPDATE emails SET status = %s WHERE id = %s", (status, message))
        for mode in ({"page": 1}, {}):
            for address, sender in (("bob@example.com", None), ("bob@example.com", "a@example.com")):
                found = {
                    other: [item["id"] for item in get_logs(client, auth, **mode, to=address, status=other,
                                                             **({"from": sender} if sender else {}))["items"]]
                    for other in statuses
                }  # fmt: skip
                assert found == {other: [message] if other == status else [] for other in statuses}


@pytest.mark.parametrize("fill_rows", [100_000, 1], ids=["one fill", "many small fills"])
def test_today_is_counted_in_the_requested_time_zone(client, auth, database, monkeypatch, fill_rows):
    monkeypatch.setattr("emailsvc.queries.log_counts.FILL_ROWS", fill_rows)
    # Asia/Dhaka is UTC+6 all year: 23:30 UTC is already 05:30 the next day there.
    today = datetime.now(DHAKA).date()
    yesterday_utc = datetime.combine(today - timedelta(days=1), time(), UTC)
    insert_logs(
        database,
        {"created_at": yesterday_utc + timedelta(hours=23, minutes=30)},  # Dhaka: today 05:30
        {"created_at": yesterday_utc + timedelta(hours=17, minutes=30),  # Dhaka: yesterday 23:30
         "sent_at": yesterday_utc + timedelta(hours=18, minutes=30)},  # Dhaka: today 00:30
        {"status": "FAILED", "created_at": yesterday_utc + timedelta(hours=17),
         "failed_at": yesterday_utc + timedelta(hours=17, minutes=59)},  # Dhaka: yesterday 23:59
    )  # fmt: skip
    dhaka = get_logs(client, auth, tz="Asia/Dhaka")["today"]
    assert dhaka == {"date": today.isoformat(), "timezone": "Asia/Dhaka", "created": 1, "sent": 1, "failed": 0}

    utc = get_logs(client, auth, page=1)["today"]
    utc_today = datetime.now(UTC).date()
    same_day = utc_today == yesterday_utc.date()  # from 18:00 UTC, Dhaka is already a day ahead
    counts = {"created": 3, "sent": 1, "failed": 1} if same_day else {"created": 0, "sent": 0, "failed": 0}
    assert utc == {"date": utc_today.isoformat(), "timezone": "UTC", **counts}


def test_today_counts_stay_exact_while_the_running_counts_fill_in_small_steps(client, auth, database, monkeypatch):
    monkeypatch.setattr("emailsvc.queries.log_counts.FILL_ROWS", 1)
    now = datetime.now(UTC)
    insert_logs(database, *[
        {"created_at": now - timedelta(minutes=47 * i),
         "sent_at": now - timedelta(minutes=47 * i - 1) if i % 2 else None,
         "failed_at": now - timedelta(minutes=47 * i - 2) if i % 5 == 0 else None}
        for i in range(1, 41)
    ])  # fmt: skip
    zones = ["UTC", "Asia/Kathmandu", "America/St_Johns"]
    for _ in range(15):
        for zone in zones:
            today = get_logs(client, auth, limit=1, tz=zone)["today"]
            start = datetime.combine(datetime.fromisoformat(today["date"]), time(), ZoneInfo(zone))
            window = {"start": start, "end": start + timedelta(days=1)}
            expected = run_sql(
                database,
                """
                SELECT (SELECT count(*) FROM emails WHERE created_at >= %(start)s AND created_at < %(end)s),
                       (SELECT count(*) FROM emails WHERE sent_at >= %(start)s AND sent_at < %(end)s),
                       (SELECT count(*) FROM emails WHERE failed_at >= %(start)s AND failed_at < %(end)s)""",
                window,
            )
            assert (today["created"], today["sent"], today["failed"]) == expected[0], zone


def test_today_counts_follow_sends_and_outcomes(client, auth, database):
    now = datetime.now(UTC)
    insert_logs(
        database,
        {"status": "SENT", "created_at": now, "sent_at": now},
        {"status": "FAILED", "created_at": now, "failed_at": now},
        {"status": "PENDING", "created_at": now},
        {"status": "SENT", "created_at": now - timedelta(days=3), "sent_at": now - timedelta(days=3)},
    )
    today = get_logs(client, auth, limit=1)["today"]
    assert (today["created"], today["sent"], today["failed"]) == (3, 1, 1)


def test_page_total_and_counts_are_read_at_the_same_time_on_the_read_pool(settings, database):
    reader = "emailsvc-logs-reader"
    app = create_app({**settings, "DATABASE_READ_URL": f"{database}?application_name={reader}"})
    headers = {"X-API-Key": make_key(app)}
    insert_logs(database, {})
    blocker = psycopg2.connect(database)
    blocker.cursor().execute("LOCK TABLE emails IN ACCESS EXCLUSIVE MODE")  # every read now waits
    result = {}
    request = threading.Thread(
        target=lambda: result.update(response=app.test_client().get("/email/logs?page=1", headers=headers))
    )
    request.start()

    def waiting_readers():
        sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
        return run_sql(database, sql, (reader,))[0][0] == 3

    try:
        wait_for(waiting_readers, message="the page, the total and today's counts to wait side by side")
    finally:
        blocker.rollback()
        blocker.close()
        request.join(timeout=20)
    assert result["response"].status_code == 200
    assert result["response"].get_json()["pagination"]["total"] == 1


NASTY = ["", " ", "\x00", "%", "'; DROP TABLE emails; --", "-1", "1e309", "NaN", "𝟘", "٣", "9" * 5000, "a" * 300,
         "../../etc/passwd", "2026-11-28T25:61:00Z", "0000-00-00", "<x@y>", "null", "[]", "{}"]  # fmt: skip


@pytest.mark.parametrize("name", ["page", "limit", "cursor", "status", "to", "from", "created_after",
                                  "created_before", "tz"])  # fmt: skip
def test_no_value_of_any_parameter_causes_a_server_error(client, auth, database, name):
    insert_logs(database, {})
    for value in NASTY:
        response = client.get("/email/logs", query_string={name: value}, headers=auth)
        assert response.status_code in (200, 400), (name, value, response.get_json())
        assert response.is_json


def test_a_plus_sign_decoded_as_a_space_still_names_the_zone(client, auth):
    response = client.get("/email/logs?tz=Etc/GMT+2", headers=auth)  # unencoded `+`: a space on arrival
    assert response.status_code == 200
    assert response.get_json()["today"]["timezone"] == "Etc/GMT+2"


def test_an_unreachable_read_database_is_503_with_retry_after(settings):
    app = create_app({**settings, "DATABASE_READ_URL": "postgresql://postgres@127.0.0.1:1/none"})
    response = app.test_client().get("/email/logs", headers={"X-API-Key": make_key(app)})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"]
