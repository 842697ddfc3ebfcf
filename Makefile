# emailsvc — `make` lists the targets.
VENV := .venv
PY := $(VENV)/bin/python
SERVICES = eval "$$(bin/services)"

.PHONY: help install run worker dashboard test test-fast lint bench bench-logs bench-scaling bench-relay bench-hostile bench-purge

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed  ## create .venv and install requirements.txt

run: install  ## API on :8000, one worker and the dev SMTP sink (var/mail/); Ctrl-C stops all
	bin/run-dev

worker: install  ## one more worker against the development database and Redis
	@$(SERVICES); DATABASE_URL="$${DATABASE_URL:-$$EMAILSVC_PG/emailsvc}" \
	  REDIS_URL="$${REDIS_URL:-$$EMAILSVC_REDIS/0}" $(PY) worker.py

dashboard:  ## where rq-dashboard is: /ui/queues/ of the running service, for an operator key
	@echo "rq-dashboard is at http://127.0.0.1:8000/ui/queues/ while 'make run' runs (SECRET_KEY set elsewhere);"
	@echo "sign in with an operator key: .venv/bin/flask --app wsgi api-keys create ops --scopes operator"

test: install  ## the whole suite, fault tests included, against its own database and Redis db
	@$(SERVICES); export TEST_DATABASE_URL="$${TEST_DATABASE_URL:-$$EMAILSVC_PG/emailsvc_test}" \
	  TEST_REDIS_URL="$${TEST_REDIS_URL:-$$EMAILSVC_REDIS/15}"; $(PY) -m pytest $(PYTEST_ARGS)

test-fast: PYTEST_ARGS = -m "not slow"
test-fast: test  ## the suite without the slow fault tests

lint: install  ## ruff
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install  ## throughput: accept, delivery (smtp-sink; relay at 0 and 100 ms), end to end, memory, beside bare baselines
	bin/bench-deps
	$(PY) bench/throughput.py

bench-scaling: install  ## delivery mails/s by processes x SMTP_CONCURRENCY x relay delay, accept by instances, DB CPU
	bin/bench-deps
	$(PY) bench/scaling.py $(BENCH_ARGS)

bench-relay: install  ## the ceiling of bench/relay.py (the latency relay of the benchmarks) beside smtp-sink
	bin/bench-deps
	$(PY) bench/relay_ceiling.py $(BENCH_ARGS)

bench-hostile: install  ## CPU one hostile POST /email/send costs, refused or accepted (bench/hostile.py)
	$(PY) bench/hostile.py $(BENCH_ARGS)

bench-logs: install  ## GET /email/logs p50/p95: a 10k project alone, one beside a ROWS project (default 1000000), that one; own databases
	@$(SERVICES); $(PY) bench/logs.py --rows "$${ROWS:-1000000}" --pg "$$EMAILSVC_PG" \
	  --redis "$${BENCH_REDIS_URL:-$$EMAILSVC_REDIS/14}" $(BENCH_ARGS)

bench-purge: install  ## GET /email/logs and POST /email/send while `flask purge` deletes ROWS (default 1000000) old rows
	@$(SERVICES); $(PY) bench/purge.py --rows "$${ROWS:-1000000}" --pg "$$EMAILSVC_PG" \
	  --redis "$${BENCH_REDIS_URL:-$$EMAILSVC_REDIS/14}" $(BENCH_ARGS)
