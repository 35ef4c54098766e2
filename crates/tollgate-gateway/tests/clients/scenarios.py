"""The official OpenAI, Anthropic and Prometheus clients against a running tollgate gateway.

Run by tests/official_clients.rs, one scenario per run:

    python scenarios.py <scenario>

with TOLLGATE_URL (the gateway's http://host:port) and TOLLGATE_KEY set. The Rust test scripts
the upstream before each run; each scenario asserts what the client sees and exits non-zero
(with the reason) when it is not what it should be.
"""

import os
import sys

URL = os.environ["TOLLGATE_URL"]
KEY = os.environ["TOLLGATE_KEY"]


def openai_client(**options):
    import openai

    return openai.OpenAI(base_url=URL + "/v1", api_key=KEY, **options)


def chat():
    answer = openai_client().chat.completions.create(
        model="default", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "echo: hi", answer
    assert answer.usage.prompt_tokens == 10 and answer.usage.completion_tokens == 5, answer.usage
    assert answer.system_fingerprint == "fp_test", answer


def stream():
    pieces = []
    usage = None
    for chunk in openai_client().chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    assert "".join(pieces) == "Hello world", pieces
    assert usage is not None and usage.completion_tokens == 2, usage


def tool_call():
    answer = openai_client().chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
    )
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls", answer
    call = message.tool_calls[0]
    assert call.id == "call_1" and call.type == "function", call
    assert call.function.name == "weather", call
    assert call.function.arguments == '{"city":"Paris"}', call


def rate_limited():
    import openai

    client = openai_client(max_retries=0)
    client.chat.completions.create(model="default", messages=[{"role": "user", "content": "one"}])
    try:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "two"}])
    except openai.RateLimitError as error:
        headers = error.response.headers
        assert 1 <= int(headers["retry-after"]) <= 2, dict(headers)
        assert int(headers["retry-after-ms"]) > 500, dict(headers)
        assert headers["x-ratelimit-limit-requests"] == "1", dict(headers)
        assert headers["x-ratelimit-remaining-requests"] == "0", dict(headers)
        assert error.code == "rate_limit_exceeded", error.body
    else:
        raise AssertionError("the second call in two seconds was not refused")
    # With one retry, the client waits as long as retry-after-ms says (its own backoff would
    # retry within half a second and be refused again), and the retry is admitted.
    answer = openai_client(max_retries=1).chat.completions.create(
        model="default", messages=[{"role": "user", "content": "three"}]
    )
    assert answer.choices[0].message.content == "echo: three", answer


def unauthorized():
    import openai

    client = openai.OpenAI(base_url=URL + "/v1", api_key="tg-not-a-key", max_retries=0)
    try:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError as error:
        assert error.status_code == 401, error
        assert error.code == "invalid_api_key", error.body
    else:
        raise AssertionError("an unknown key was let through")


def embeddings():
    answer = openai_client().embeddings.create(model="up/text-embed", input=["one", "two"])
    assert len(answer.data) == 2, answer
    assert answer.data[1].embedding == [0.25, -0.5, 1.0], answer
    assert answer.usage.prompt_tokens == 8, answer.usage


def anthropic_client():
    import anthropic

    return anthropic.Anthropic(base_url=URL, api_key=KEY, max_retries=0)


def anthropic_message():
    message = anthropic_client().messages.create(
        model="default", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.type == "message" and message.role == "assistant", message
    assert message.content[0].type == "text" and message.content[0].text == "echo: hi", message
    assert message.stop_reason == "end_turn", message
    assert message.usage.input_tokens == 10 and message.usage.output_tokens == 5, message.usage


def anthropic_stream():
    with anthropic_client().messages.stream(
        model="default", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello world", text
    assert final.content[0].text == "Hello world", final
    assert final.stop_reason == "end_turn", final
    assert final.usage.output_tokens == 2, final.usage


def metrics():
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(URL + "/metrics").read().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = families["tollgate_gateway_requests"]
    assert requests.type == "counter", requests
    ok = [s for s in requests.samples if s.labels == {"api": "openai", "status": "200"}]
    assert ok and ok[0].value == 1, requests.samples
    overhead = families["tollgate_gateway_overhead_seconds"]
    assert overhead.type == "histogram", overhead
    assert any(s.name.endswith("_bucket") for s in overhead.samples), overhead.samples
    requests = families["tollgate_requests"]
    chat = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "up", "gen_ai_request_model": "up-model", "outcome": "ok"}
    answered = [s.value for s in requests.samples if s.labels == chat]
    assert answered == [1], requests.samples
    # Each fact once: none of the gateway's old pull-style names beside the layers' own.
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    for old in [
        "tollgate_calls_total", "tollgate_input_tokens_total", "tollgate_cached_input_tokens_total",
        "tollgate_output_tokens_total", "tollgate_cost_microdollars_total", "tollgate_cache_hits_total",
        "tollgate_cache_misses_total", "tollgate_cache_coalesced_total", "tollgate_breaker_open", "tollgate_provider_health",
    ]:
        assert old not in names, old
    # Each series listed once.
    series = [(s.name, tuple(sorted(s.labels.items()))) for f in families.values() for s in f.samples]
    assert len(series) == len(set(series)), [x for x in series if series.count(x) > 1]


if __name__ == "__main__":
    globals()[sys.argv[1]]()
    print("ok")
