-- wrk script: POST /email/send with the key from BENCH_KEY.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")
wrk.body = '{"to": "Reader <reader@example.com>", "subject": "Your order has shipped", ' ..
           '"body": "Hello, your order 42 is on its way.", "metadata": {"order_id": "42"}}'
