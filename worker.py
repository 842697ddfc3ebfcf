"""The worker process: `python worker.py` delivers queued mail (see emailsvc/workers.py)."""

from emailsvc.workers import main

if __name__ == "__main__":
    main()
