"""A Bedrock runtime test server that checks each call's SigV4 signature with botocore's own
signer (the official AWS SDK's signing code), and answers from a script.

Started by the Rust tests (tests/bedrock_support/mod.rs) as a child process:

    python bedrock_server.py --access-key AKID --secret SECRET [--session-token T] [--api-key K]

It prints `PORT <n>` once it listens on a free loopback port, then serves until stdin closes.

Control, unsigned: `POST /_script` queues the answer to the next model call (JSON:
{"status", "headers", "json"} for a whole answer, {"status", "events": [[name, payload], ...],
"exception": [name, payload], "cut": bytes} for an event stream, {"status", "raw": base64});
`GET /_seen` lists what the model calls carried (method, path, headers, body, auth).

A model call (`/model/...`) is checked first: a `Bearer` key must be the one given; otherwise the
`Authorization` header's SigV4 signature is recomputed with `botocore.auth.SigV4Auth` over the
received method, path, the headers it names as signed, and the body, with the same credentials
and the call's own `X-Amz-Date`, and a mismatch is refused as AWS refuses it: 403 with
`x-amzn-ErrorType: InvalidSignatureException`.

Event streams are framed by the published spec, by hand (test code): each message is a prelude
(total length, headers length, CRC32 of those 8 bytes), headers (name length, name, type 7 =
string, value length, value), the JSON payload, and the CRC32 of all before it.
https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream
"""

import argparse
import base64
import json
import struct
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ARGS = None
SCRIPT = []
SEEN = []
LOCK = threading.Lock()


def header_bytes(name, value):
    name = name.encode()
    value = value.encode()
    return struct.pack(">B", len(name)) + name + b"\x07" + struct.pack(">H", len(value)) + value


def frame(headers, payload):
    """One event-stream message: prelude, its CRC, headers, payload, message CRC."""
    encoded = b"".join(header_bytes(n, v) for n, v in headers)
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message) & 0xFFFFFFFF)


def event(name, payload):
    return frame(
        [(":event-type", name), (":content-type", "application/json"), (":message-type", "event")],
        json.dumps(payload, separators=(",", ":")).encode(),
    )


def exception(name, payload):
    return frame(
        [
            (":exception-type", name),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json.dumps(payload).encode(),
    )


def parse_authorization(value):
    """The parts of `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`."""
    algorithm, _, rest = value.partition(" ")
    parts = dict(p.strip().split("=", 1) for p in rest.split(","))
    return algorithm, parts


def check_signature(method, path, headers, body):
    """None when the call's signature is botocore's, else why not."""
    authorization = headers.get("authorization", "")
    if authorization.startswith("Bearer "):
        if ARGS.api_key and authorization[len("Bearer "):] == ARGS.api_key:
            return None
        return "the API key is not the one expected"
    if not authorization:
        return "no Authorization header"
    algorithm, parts = parse_authorization(authorization)
    if algorithm != "AWS4-HMAC-SHA256":
        return "algorithm " + algorithm
    access_key, date, region, service, terminator = parts["Credential"].split("/")
    amz_date = headers.get("x-amz-date", "")
    if access_key != ARGS.access_key:
        return "unknown access key"
    if (date, region, service, terminator) != (amz_date[:8], ARGS.region, "bedrock", "aws4_request"):
        return "credential scope " + parts["Credential"].split("/", 1)[1]
    signed = parts["SignedHeaders"].split(";")
    for required in ("host", "x-amz-date"):
        if required not in signed:
            return required + " is not signed"
    if ARGS.session_token:
        if headers.get("x-amz-security-token") != ARGS.session_token:
            return "the session token is not the one expected"
        if "x-amz-security-token" not in signed:
            return "x-amz-security-token is not signed"
    request = AWSRequest(
        method=method,
        url="http://" + headers["host"] + path,
        data=body,
        headers={name: headers[name] for name in signed},
    )
    request.context["timestamp"] = amz_date
    credentials = Credentials(ARGS.access_key, ARGS.secret, ARGS.session_token or None)
    signer = SigV4Auth(credentials, "bedrock", ARGS.region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != parts["Signature"]:
        return "the signature does not match botocore's; canonical request:\n" + canonical
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, headers, body):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self):
        if self.path == "/_seen":
            with LOCK:
                seen = json.dumps(SEEN).encode()
            return self.answer(200, {"content-type": "application/json"}, seen)
        self.answer(404, {}, b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/_script":
            with LOCK:
                SCRIPT.append(json.loads(body))
            return self.answer(204, {}, b"")
        if self.path == "/" and b"Action=AssumeRoleWithWebIdentity" in body:
            return self.assume_role_with_web_identity(body)
        headers = {name.lower(): value for name, value in self.headers.items()}
        refused = check_signature("POST", self.path, headers, body)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        with LOCK:
            SEEN.append(
                {"path": self.path, "headers": headers, "body": parsed, "signature": refused}
            )
            reply = SCRIPT.pop(0) if SCRIPT and refused is None else None
        if refused is not None:
            error = {"message": "The request signature we calculated does not match the signature you provided."}
            return self.answer(
                403,
                {"content-type": "application/json", "x-amzn-ErrorType": "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"},
                json.dumps(error).encode(),
            )
        if reply is None:
            return self.answer(500, {}, b"no reply scripted")
        status = reply.get("status", 200)
        headers = dict(reply.get("headers", {}))
        if "events" in reply or "exception" in reply:
            stream = b"".join(event(name, payload) for name, payload in reply.get("events", []))
            if "exception" in reply:
                stream += exception(*reply["exception"])
            if "cut" in reply:
                stream = stream[: len(stream) - reply["cut"]]
            headers.setdefault("content-type", "application/vnd.amazon.eventstream")
            return self.answer(status, headers, stream)
        if "raw" in reply:
            return self.answer(status, headers, base64.b64decode(reply["raw"]))
        headers.setdefault("content-type", "application/json")
        return self.answer(status, headers, json.dumps(reply.get("json", {})).encode())


STS_ANSWER = """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:app</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/bedrock-caller/app</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:app</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{token}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
      <AccessKeyId>{key}</AccessKeyId>
    </Credentials>
    <Provider>www.example.com</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""


def _assume(self, body):
    """STS's AssumeRoleWithWebIdentity (unsigned: the web identity token is the proof), as its
    reference answers: https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html"""
    fields = dict(p.split("=", 1) for p in body.decode().split("&"))
    with LOCK:
        SEEN.append({"path": "/", "sts": fields.get("Action"), "token": fields.get("WebIdentityToken")})
    answer = STS_ANSWER.format(token=ARGS.session_token, secret=ARGS.secret, key=ARGS.access_key)
    self.answer(200, {"content-type": "text/xml"}, answer.encode())


Handler.assume_role_with_web_identity = _assume


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--session-token", default="")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--api-key", default="")
    ARGS = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("PORT", server.server_address[1], flush=True)
    # The test ends the server by closing stdin (or killing it).
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
