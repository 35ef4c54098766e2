"""Each cloud provider's protocol as a local test server (Azure OpenAI, the Gemini API, Vertex
AI's Gemini and Claude models with its OAuth token endpoint, Groq; Bedrock has a server of its
own, tollgate-providers/tests/bedrock_server.py), and the official clients through the gateway
to each. Run by tests/providers.rs:

    python providers.py serve          # the test servers; prints their base URLs as one JSON line
    python providers.py <role> <door>  # a scenario: the official client of <door> against <role>

Each server answers every call with a tool call (`get_weather` for Paris), whole or streamed as the
call asked, in its own wire format, with 1,000 prompt tokens of which 800 were read from the
provider's cache and 20 answer tokens. A prompt saying TOO LONG is refused as too long for the
context window, one saying FILTER ME by the provider's content filter, each as the provider's
documentation shows it. Test code: tollgate's own code never reads these shapes from here.
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AZURE_KEY = "azure-test-key"
GEMINI_KEY = "gemini-test-key"
VERTEX_TOKEN = "vertex-access-token"
ARGS = {"city": "Paris"}


def prompt_of(body):
    """The text of a request's messages, in any of the formats here."""
    return json.dumps(body)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def send_json(self, status, value, headers=()):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_events(self, events, done=False):
        data = "".join("data: " + json.dumps(event) + "\n\n" for event in events)
        if done:
            data += "data: [DONE]\n\n"
        data = data.encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        path = self.path
        if path == "/token":
            # Vertex's OAuth token endpoint (the key file's token_uri): a JWT bearer grant in,
            # an access token out. tests/vertex.rs in the providers crate checks the JWT itself.
            length = int(self.headers.get("content-length") or 0)
            form = self.rfile.read(length).decode()
            if "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" not in form:
                return self.send_json(400, {"error": "unsupported_grant_type"})
            return self.send_json(200, {"access_token": VERTEX_TOKEN, "expires_in": 3600, "token_type": "Bearer"})
        body = self.body()
        said = prompt_of(body)
        if path.startswith("/openai/deployments/"):
            return self.azure(path, body, said)
        if path == "/groq/openai/v1/chat/completions":
            return self.groq(body, said)
        if path.startswith("/v1/projects/"):
            return self.vertex(path, body, said)
        if ":generateContent" in path or ":streamGenerateContent" in path:
            return self.gemini(path, body, said)
        self.send_json(404, {"error": {"message": "no such path: " + path}})

    # https://learn.microsoft.com/azure/ai-foundry/openai/reference
    def azure(self, path, body, said):
        if self.headers.get("api-key") != AZURE_KEY:
            return self.send_json(401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key."}})
        if "api-version=2024-10-21" not in path or "/deployments/gpt-4o-prod/" not in path:
            return self.send_json(404, {"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}})
        if "TOO LONG" in said:
            return self.send_json(400, {"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130012 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
        if "FILTER ME" in said:
            return self.send_json(400, {"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.", "type": None, "param": "prompt", "code": "content_filter", "status": 400,
                                                  "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {"violence": {"filtered": True, "severity": "medium"}}}}})
        usage = {"prompt_tokens": 1000, "completion_tokens": 20, "total_tokens": 1020, "prompt_tokens_details": {"cached_tokens": 800}}
        call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(ARGS)}}
        if not body.get("stream"):
            return self.send_json(200, {"id": "chatcmpl-az", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-11-20",
                                        "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]}, "finish_reason": "tool_calls",
                                                     "content_filter_results": {}}],
                                        "usage": usage})
        assert body.get("stream_options", {}).get("include_usage") is True, body

        def chunk(delta, finish=None):
            return {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-11-20",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        arguments = json.dumps(ARGS)
        self.send_events([
            # Azure's first chunk says what its filter made of the prompt, with no choices.
            {"id": "", "object": "", "created": 0, "model": "", "choices": [],
             "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]},
            chunk({"role": "assistant", "content": None, "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:9]}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[9:]}}]}),
            chunk({}, "tool_calls"),
            {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-11-20", "choices": [], "usage": usage},
        ], done=True)

    # https://console.groq.com/docs/openai: Groq refuses a message's `name` with a 400, and has
    # sent a stream's usage under `x_groq`.
    def groq(self, body, said):
        if self.headers.get("authorization") != "Bearer groq-test-key":
            return self.send_json(401, {"error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}})
        if any("name" in message for message in body.get("messages", [])):
            return self.send_json(400, {"error": {"message": "'messages.0' : property 'name' is unsupported", "type": "invalid_request_error"}})
        if "TOO LONG" in said:
            return self.send_json(400, {"error": {"message": "Please reduce the length of the messages or completion.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
        if "FILTER ME" in said:
            return self.send_json(400, {"error": {"message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error", "code": "content_policy_violation"}})
        usage = {"prompt_tokens": 1000, "completion_tokens": 20, "total_tokens": 1020, "prompt_tokens_details": {"cached_tokens": 800}}
        call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(ARGS)}}
        if not body.get("stream"):
            return self.send_json(200, {"id": "chatcmpl-groq", "object": "chat.completion", "created": 1, "model": "openai/gpt-oss-120b",
                                        "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]}, "finish_reason": "tool_calls"}],
                                        "usage": usage})

        def chunk(delta, finish=None):
            return {"id": "chatcmpl-groq", "object": "chat.completion.chunk", "created": 1, "model": "openai/gpt-oss-120b",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        last = chunk({}, "tool_calls")
        last["x_groq"] = {"id": "req_1", "usage": usage}
        self.send_events([
            chunk({"role": "assistant", "content": None, "tool_calls": [dict(call, index=0)]}),
            last,
        ], done=True)

    # https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude
    def vertex(self, path, body, said):
        if self.headers.get("authorization") != "Bearer " + VERTEX_TOKEN:
            return self.send_json(401, {"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}})
        prefix = "/v1/projects/test-project/locations/us-east5/publishers/"
        if path.startswith(prefix + "google/models/gemini-2.5-flash:"):
            return self.gemini(path, body, said, vertex=True)
        if not path.startswith(prefix + "anthropic/models/claude-sonnet-4-5@20250929:"):
            return self.send_json(404, {"error": {"code": 404, "message": "Publisher model not found.", "status": "NOT_FOUND"}})
        assert body.get("anthropic_version") == "vertex-2023-10-16" and "model" not in body, body
        if "TOO LONG" in said:
            return self.send_json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 210345 tokens > 200000 maximum"}})
        usage = {"input_tokens": 200, "cache_read_input_tokens": 800, "cache_creation_input_tokens": 0, "output_tokens": 20}
        stop = "refusal" if "FILTER ME" in said else "tool_use"
        use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": ARGS}
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                   "content": [use] if stop == "tool_use" else [], "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if path.endswith(":rawPredict"):
            return self.send_json(200, message)
        assert path.endswith(":streamRawPredict") and body.get("stream") is True, (path, body)
        start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
        arguments = json.dumps(ARGS)
        events = [("message_start", {"type": "message_start", "message": start})]
        if stop == "tool_use":
            events += [
                ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": dict(use, input={})}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": arguments[:9]}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": arguments[9:]}}),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ]
        events += [
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 20}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        data = "".join("event: %s\ndata: %s\n\n" % (name, json.dumps(event)) for name, event in events).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # https://ai.google.dev/api/generate-content
    def gemini(self, path, body, said, vertex=False):
        if not vertex and self.headers.get("x-goog-api-key") != GEMINI_KEY:
            return self.send_json(403, {"error": {"code": 403, "message": "API key not valid. Please pass a valid API key.", "status": "PERMISSION_DENIED"}})
        if not vertex and not path.startswith("/v1beta/models/gemini-2.5-flash:"):
            return self.send_json(404, {"error": {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND"}})
        if "TOO LONG" in said:
            return self.send_json(400, {"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}})
        usage = {"promptTokenCount": 1000, "candidatesTokenCount": 20, "cachedContentTokenCount": 800, "totalTokenCount": 1020}
        if "FILTER ME" in said:
            return self.send_json(200, {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
                                        "usageMetadata": {"promptTokenCount": 1000, "totalTokenCount": 1000}, "modelVersion": "gemini-2.5-flash"})
        declared = [d["name"] for tool in body.get("tools", []) for d in tool.get("functionDeclarations", [])]
        assert declared == ["get_weather"], body
        call = {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": ARGS}}]}
        if ":generateContent" in path:
            return self.send_json(200, {"candidates": [{"content": call, "finishReason": "STOP", "index": 0}],
                                        "usageMetadata": usage, "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"})
        assert path.endswith("alt=sse"), path
        self.send_events([
            {"candidates": [{"content": call, "index": 0}], "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"},
            {"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
             "usageMetadata": usage, "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"},
        ])


def serve():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d" % server.server_address[1]
    print(json.dumps({"url": url}), flush=True)
    # Until the test closes standard input.
    sys.stdin.read()


TOOLS_OPENAI = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "The weather in a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
ASK = "What is the weather in Paris?"


def openai_door(role):
    import openai

    client = openai.OpenAI(base_url=os.environ["TOLLGATE_URL"] + "/v1", api_key=os.environ["TOLLGATE_KEY"], max_retries=0)
    answer = client.chat.completions.create(model=role, messages=[{"role": "user", "content": ASK}], tools=TOOLS_OPENAI)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", answer
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == ARGS, answer
    assert answer.usage.prompt_tokens == 1000 and answer.usage.completion_tokens == 20, answer.usage
    assert answer.usage.prompt_tokens_details.cached_tokens == 800, answer.usage

    names, arguments, finish, usage = [], {}, None, None
    for chunk in client.chat.completions.create(model=role, messages=[{"role": "user", "content": ASK}], tools=TOOLS_OPENAI,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            for piece in choice.delta.tool_calls or []:
                if piece.function.name:
                    names.append(piece.function.name)
                arguments[piece.index] = arguments.get(piece.index, "") + (piece.function.arguments or "")
            finish = choice.finish_reason or finish
    assert names == ["get_weather"] and json.loads(arguments[0]) == ARGS, (names, arguments)
    assert finish == "tool_calls", finish
    assert usage is not None and usage.prompt_tokens == 1000 and usage.prompt_tokens_details.cached_tokens == 800, usage


def anthropic_door(role):
    import anthropic

    client = anthropic.Anthropic(base_url=os.environ["TOLLGATE_URL"], api_key=os.environ["TOLLGATE_KEY"], max_retries=0)
    message = client.messages.create(model=role, max_tokens=256, tools=TOOLS_ANTHROPIC, messages=[{"role": "user", "content": ASK}])
    assert message.stop_reason == "tool_use", message
    uses = [block for block in message.content if block.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather" and uses[0].input == ARGS, message
    # The prompt counted whole in OpenAI's way is Anthropic's uncached input plus its cache reads.
    assert message.usage.cache_read_input_tokens == 800 and message.usage.input_tokens == 200, message.usage

    with client.messages.stream(model=role, max_tokens=256, tools=TOOLS_ANTHROPIC, messages=[{"role": "user", "content": ASK}]) as stream:
        final = stream.get_final_message()
    uses = [block for block in final.content if block.type == "tool_use"]
    assert final.stop_reason == "tool_use", final
    assert len(uses) == 1 and uses[0].name == "get_weather" and uses[0].input == ARGS, final


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        role, door = sys.argv[1], sys.argv[2]
        {"openai": openai_door, "anthropic": anthropic_door}[door](role)
        print("ok")
