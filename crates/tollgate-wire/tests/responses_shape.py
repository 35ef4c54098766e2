"""Validates what tollgate wrote against the official openai client's Responses types, strictly.

Reads JSON lines `["response" | "event", payload]` from stdin; prints how many passed, or exits
non-zero naming the first that did not.
"""

import json
import sys

from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

events = TypeAdapter(ResponseStreamEvent)
count = 0
for line in sys.stdin:
    kind, payload = json.loads(line)
    try:
        if kind == "response":
            Response.model_validate(payload)
        else:
            events.validate_python(payload)
    except Exception as error:  # noqa: BLE001 - the report is the point
        print(f"{kind} #{count} does not parse: {json.dumps(payload)[:2000]}\n{str(error)[:3000]}")
        sys.exit(1)
    count += 1
print(count)
