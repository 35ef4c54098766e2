"""The official clients sending what only Anthropic's API has, through the gateway.

Each scenario prints what its client put on the wire and what it got back, as the bytes were
(base64, one `name value` line each), for `tests/passthrough.rs` to hold against what the
Anthropic-shaped upstream received and sent.
"""

import base64
import os
import sys

import httpx2 as httpx

URL = os.environ["TOLLGATE_URL"]
KEY = os.environ["TOLLGATE_KEY"]

SENT = []
VERSIONS = []


def keep_request(request):
    SENT.append(request.read())
    VERSIONS.append(request.headers.get("anthropic-version", "").encode())


def say(name, data):
    print(name, base64.b64encode(data).decode())


def anthropic_client():
    import anthropic

    http = httpx.Client(event_hooks={"request": [keep_request]})
    return anthropic.Anthropic(
        base_url=URL,
        api_key=KEY,
        max_retries=0,
        http_client=http,
        default_headers={"anthropic-beta": "prompt-caching-2024-07-31,citations-2024-11-21"},
    )


# What only the Messages API has: cache marks on system blocks, a tool and a message block, a
# server tool, and a document with citations.
CACHED = {"type": "ephemeral"}
REQUEST = dict(
    model="default",
    max_tokens=512,
    system=[
        {"type": "text", "text": "You answer from the document.", "cache_control": CACHED},
    ],
    tools=[
        {
            "name": "lookup",
            "description": "Looks a word up.",
            "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}},
            "cache_control": CACHED,
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
    ],
    messages=[
        {
            "role": "user",
            "content": [
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."},
                    "title": "Sky",
                    "citations": {"enabled": True},
                    "cache_control": CACHED,
                },
                {"type": "text", "text": "What colour is the sky?"},
            ],
        }
    ],
    extra_body={"top_k": 5},
)


def anthropic_message():
    raw = anthropic_client().messages.with_raw_response.create(**REQUEST)
    message = raw.parse()
    kinds = [block.type for block in message.content]
    assert kinds == ["redacted_thinking", "text"], kinds
    assert message.content[1].citations[0].cited_text == "The sky is blue.", message
    say("sent", SENT[-1])
    say("version", VERSIONS[-1])
    say("got", raw.http_response.content)


def anthropic_stream():
    with anthropic_client().messages.with_streaming_response.create(stream=True, **REQUEST) as raw:
        body = b"".join(raw.http_response.iter_bytes())
    say("sent", SENT[-1])
    say("version", VERSIONS[-1])
    say("got", body)


def openai_cache_control():
    from openai import OpenAI

    http = httpx.Client(event_hooks={"request": [keep_request]})
    client = OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, http_client=http)
    answer = client.chat.completions.create(
        model="default",
        max_tokens=64,
        messages=[
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "A long, stable preamble.", "cache_control": CACHED}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "A long document.", "cache_control": CACHED},
                    {"type": "text", "text": "The question."},
                ],
            },
        ],
        tools=[
            {
                "type": "function",
                "function": {"name": "lookup", "parameters": {"type": "object"}},
                "cache_control": CACHED,
            }
        ],
    )
    assert answer.choices[0].message.content == "Blue.", answer
    say("sent", SENT[-1])


if __name__ == "__main__":
    globals()[sys.argv[1]]()
