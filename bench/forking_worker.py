"""RQ's default forking Worker running emailsvc's own delivery job, for comparison in `make bench`."""

import sys

from rq import Worker

from emailsvc import create_app
from emailsvc.services import get_services

app = create_app()
# The forked child inherits this context, so the job finds the app as it does in worker.py.
app.app_context().push()
services = get_services()
Worker([services.email_queue], connection=services.redis).work(burst=True, logging_level="WARNING")
sys.exit(0)
