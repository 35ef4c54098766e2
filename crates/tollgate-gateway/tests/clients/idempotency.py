"""The official OpenAI client's own retry, answered once: a proxy between it and the gateway loses
the gateway's first answer (it waits for all of it, then tells the client 504), and the client's
retry, with the same Idempotency-Key, gets that answer replayed.

Run by tests/idempotency.rs:

    python idempotency.py <scenario>

with TOLLGATE_URL (the gateway's http://host:port) and TOLLGATE_KEY set. The Rust test checks
what the upstream saw and what the gateway billed; this script checks what the client saw.

The client sends no Idempotency-Key of its own (openai 3.57.0's `_idempotency_header` is None), so
the call passes one in `extra_headers`: the client sends it again, unchanged, on every retry.
"""

import http.server
import os
import sys
import threading
import urllib.error
import urllib.request

URL = os.environ["TOLLGATE_URL"]
KEY = os.environ["TOLLGATE_KEY"]

# Hop-by-hop headers, and those the proxy writes itself.
OWN = {"host", "connection", "content-length", "transfer-encoding", "keep-alive"}


class LosesTheFirstAnswer(http.server.BaseHTTPRequestHandler):
    """Forwards every call to the gateway and waits for its whole answer; the first one's answer
    is dropped and the client told 504, the rest are passed on."""

    protocol_version = "HTTP/1.1"
    seen = []  # each call's (Idempotency-Key, the gateway's status)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in OWN}
        forwarded = urllib.request.Request(URL + self.path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(forwarded, timeout=30) as answer:
                status, answer_headers, answer_body = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            status, answer_headers, answer_body = error.code, error.headers, error.read()
        first = not LosesTheFirstAnswer.seen
        LosesTheFirstAnswer.seen.append((self.headers.get("Idempotency-Key"), status))
        if first:
            status, answer_headers = 504, {"content-type": "application/json"}
            answer_body = b'{"error": {"message": "the proxy timed out", "type": "timeout"}}'
        self.send_response(status)
        for name, value in answer_headers.items():
            if name.lower() not in OWN:
                self.send_header(name, value)
        self.send_header("content-length", str(len(answer_body)))
        self.end_headers()
        self.wfile.write(answer_body)

    def log_message(self, *args):
        pass


def retried_after_a_504():
    import openai

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LosesTheFirstAnswer)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{proxy.server_port}/v1", api_key=KEY, max_retries=2
    )
    raw = client.chat.completions.with_raw_response.create(
        model="default",
        messages=[{"role": "user", "content": "charge me once"}],
        extra_headers={"Idempotency-Key": "order-7d1f"},
    )
    answer = raw.parse()
    proxy.shutdown()
    assert answer.choices[0].message.content == "echo: charge me once", answer
    assert answer.usage.prompt_tokens == 10 and answer.usage.completion_tokens == 5, answer.usage
    assert raw.retries_taken == 1, raw.retries_taken
    assert raw.headers.get("x-tollgate-idempotent-replay") == "true", dict(raw.headers)
    # The gateway answered both calls 200: the first in full, lost on the way; the second from
    # what it kept.
    assert LosesTheFirstAnswer.seen == [("order-7d1f", 200), ("order-7d1f", 200)], LosesTheFirstAnswer.seen


if __name__ == "__main__":
    globals()[sys.argv[1]]()
    print("ok")
