"""A project's suppression list as the API and the page both use it: a page of it, and taking an address off."""

from .addresses import InvalidAddress, normalize_address, suppression_keys
from .cursors import split_page
from .queries.suppressions import delete_suppression, list_suppressions


def read_suppression_page(services, project_id, limit, cursor):
    """Return (entries, next_cursor): the project's list, newest first, from just past `cursor`."""
    with services.read_db.cursor() as cur:
        rows = list_suppressions(cur, project_id, limit + 1, cursor)  # one more: whether another page follows
    return split_page(rows, limit, lambda row: (row["created_at"], row["address"]))


def remove_suppression(services, project_id, address):
    """Take `address` (as a client spells it) off the project's list; return False when it was not on it."""
    try:
        [key] = suppression_keys([normalize_address(address)])
    except InvalidAddress:
        return False  # no address we could have suppressed
    with services.db.cursor() as cur:
        return delete_suppression(cur, project_id, key)
