"""A small load generator for the end-to-end benchmark: POST /email/send at a fixed rate, or flat out.

Prints "<accepted> <elapsed seconds>". wrk cannot hold a fixed rate, which the end-to-end target
(100 accepted/s sustained) needs.
"""

import argparse
import http.client
import json
import threading
import time
from urllib.parse import urlsplit

BODY = json.dumps({"to": "Reader <reader@example.com>", "subject": "Your order has shipped",
                   "body": "Hello, your order 42 is on its way."})  # fmt: skip


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, help="requests per second in total; default: flat out")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    target = urlsplit(args.url)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {args.key}"}
    accepted, lock = [0], threading.Lock()
    start = time.monotonic()
    end = start + args.seconds
    interval = args.connections / args.rate if args.rate else 0.0

    def client(index):
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        due = start + index * (interval / args.connections if interval else 0)
        while True:
            if interval:
                due += interval
                time.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() >= end:
                break
            conn.request("POST", target.path, BODY, headers)
            response = conn.getresponse()
            response.read()
            if response.status == 201:
                with lock:
                    accepted[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(accepted[0], time.monotonic() - start)


if __name__ == "__main__":
    main()
