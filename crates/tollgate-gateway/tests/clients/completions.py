"""The official `openai` client's legacy text completions (`client.completions.create`) through
the gateway, whole and streamed.

Each scenario prints what the client put on the wire (`sent`, base64) and what it read back (one
JSON line `got`), for `tests/completions.rs` to hold against what the scripted upstream received
and wrote.
"""

import base64
import json
import os
import sys

import httpx2 as httpx
import openai
from openai import OpenAI

URL = os.environ["TOLLGATE_URL"]
KEY = os.environ["TOLLGATE_KEY"]

SENT = []


def keep_request(request):
    SENT.append(request.read())


def client():
    http = httpx.Client(event_hooks={"request": [keep_request]})
    return OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, http_client=http)


def say(got):
    print("sent", base64.b64encode(SENT[-1]).decode())
    print("got", json.dumps(got))


def whole():
    answer = client().completions.create(
        model="default",
        prompt=["Once upon", "In a galaxy"],
        max_tokens=5,
        n=1,
        echo=False,
        logprobs=1,
        suffix="!",
        user="u-7",
        temperature=0.3,
    )
    assert answer.object == "text_completion", answer
    say(
        {
            "id": answer.id,
            "model": answer.model,
            "texts": [choice.text for choice in answer.choices],
            "finish": [choice.finish_reason for choice in answer.choices],
            "logprobs": [choice.logprobs.model_dump() if choice.logprobs else None for choice in answer.choices],
            "usage": answer.usage.model_dump(exclude_none=True),
        }
    )


def stream():
    chunks = client().completions.create(
        model="default",
        prompt=[[1212, 318], [40, 716]],
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, finish, usage, ids = [], [], None, set()
    for chunk in chunks:
        ids.add(chunk.id)
        for choice in chunk.choices:
            texts.append([choice.index, choice.text])
            if choice.finish_reason:
                finish.append([choice.index, choice.finish_reason])
        if chunk.usage:
            usage = chunk.usage.model_dump(exclude_none=True)
    say({"ids": sorted(ids), "texts": texts, "finish": finish, "usage": usage})


def limited():
    try:
        client().completions.create(model="default", prompt="one more", max_tokens=5)
    except openai.RateLimitError as error:
        assert error.code == "rate_limit_exceeded", error.body
        assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
        print("refused", error.status_code)
    else:
        raise AssertionError("a call over the tenant's request limit was not refused")


if __name__ == "__main__":
    globals()[sys.argv[1]]()
