"""The official `openai` client's Responses API through the gateway (tests/responses.rs).

`python responses.py SCENARIO [ARG]` runs one scenario as the key in TOLLGATE_KEY and prints one
JSON line: what the client parsed (the final response's shape, the typed events it saw, ids), for
the Rust test to hold against what it scripted and against the other upstream's run.
"""

import json
import os
import sys

import openai

URL = os.environ["TOLLGATE_URL"]
KEY = os.environ["TOLLGATE_KEY"]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def client():
    return openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0)


def shape(response):
    """What a Response says, without what differs from one server to another (ids, times)."""
    items = []
    for item in response.output:
        if item.type == "message":
            items.append(
                {
                    "type": "message",
                    "role": item.role,
                    "status": item.status,
                    "content": [{"type": part.type, "text": part.text} for part in item.content],
                }
            )
        elif item.type == "function_call":
            items.append(
                {
                    "type": "function_call",
                    "name": item.name,
                    "arguments": json.loads(item.arguments),
                    "status": item.status,
                    "call_id": bool(item.call_id),
                }
            )
        else:
            items.append({"type": item.type})
    usage = response.usage
    return {
        "object": response.object,
        "id_prefix": response.id[:5],
        "status": response.status,
        "output": items,
        "output_text": response.output_text,
        "usage": None
        if usage is None
        else {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
        },
    }


def say(**what):
    print(json.dumps(what, sort_keys=True))


def create_text(_):
    response = client().responses.create(model="default", input="Say hello.")
    say(id=response.id, shape=shape(response))


def create_call(_):
    response = client().responses.create(
        model="default", input="What is the weather in Paris?", tools=[WEATHER]
    )
    say(id=response.id, shape=shape(response))


def streamed(**asked):
    events = []
    with client().responses.stream(model="default", **asked) as stream:
        for event in stream:
            events.append(event.type)
        final = stream.get_final_response()
    say(id=final.id, events=events, shape=shape(final))


def stream_text(_):
    streamed(input="Say hello.")


def stream_call(_):
    streamed(input="What is the weather in Paris?", tools=[WEATHER])


def continued(previous):
    """A call continuing `previous`: its answer, and the stored one read back."""
    c = client()
    response = c.responses.create(
        model="default", input="And what is my name?", previous_response_id=previous
    )
    again = c.responses.retrieve(response.id)
    say(id=response.id, shape=shape(response), retrieved=shape(again), same_id=again.id == response.id)


def refused(call):
    """The status and message of a call the gateway refuses."""
    try:
        call()
    except openai.APIStatusError as error:
        return {"status": error.status_code, "message": error.message, "param": error.body.get("param")}
    return {"status": 200}


def not_theirs(previous):
    """Another key reading, continuing and deleting `previous`."""
    c = client()
    say(
        read=refused(lambda: c.responses.retrieve(previous)),
        continued=refused(
            lambda: c.responses.create(model="default", input="hi", previous_response_id=previous)
        ),
        deleted=refused(lambda: c.responses.delete(previous)),
    )


def unstored(_):
    c = client()
    response = c.responses.create(model="default", input="Say hello.", store=False)
    say(
        id=response.id,
        read=refused(lambda: c.responses.retrieve(response.id)),
        continued=refused(
            lambda: c.responses.create(model="default", input="hi", previous_response_id=response.id)
        ),
    )


def read_and_delete(id):
    c = client()
    found = c.responses.retrieve(id)
    c.responses.delete(id)
    say(
        id=found.id,
        shape=shape(found),
        read_again=refused(lambda: c.responses.retrieve(id)),
        deleted_again=refused(lambda: c.responses.delete(id)),
    )


def hosted_tool(_):
    c = client()
    say(
        refused=refused(
            lambda: c.responses.create(
                model="default", input="News?", tools=[{"type": "web_search_preview"}]
            )
        )
    )


SCENARIOS = {
    f.__name__: f
    for f in [
        create_text,
        create_call,
        stream_text,
        stream_call,
        continued,
        not_theirs,
        unstored,
        read_and_delete,
        hosted_tool,
    ]
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](sys.argv[2] if len(sys.argv) > 2 else None)
