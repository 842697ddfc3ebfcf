-- wrk script: POST /email/send with the key from BENCH_KEY; with BENCH_BATCH=N (and the URL of
-- POST /email/batch), N such messages in one request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")
local message = '{"to": "Reader <reader@example.com>", "subject": "Your order has shipped", ' ..
                '"body": "Hello, your order 42 is on its way.", "metadata": {"order_id": "42"}}'
local batch = tonumber(os.getenv("BENCH_BATCH") or "")
if batch then
  local messages = {}
  for i = 1, batch do messages[i] = message end
  wrk.body = '{"messages": [' .. table.concat(messages, ", ") .. ']}'
else
  wrk.body = message
end
