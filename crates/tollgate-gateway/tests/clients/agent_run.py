"""The OpenAI Agents SDK through the gateway (tests/responses.rs): an agent with one function tool,
on the Responses API, its client's base URL at the gateway and tracing off. Prints one JSON line:
the agent's final output and the cities its tool was called with.

(Not named `agents.py`: run as a script, that name would hide the SDK's own package.)
"""

import asyncio
import json
import os

from openai import AsyncOpenAI
from agents import (
    Agent,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)

URL = os.environ["TOLLGATE_URL"]
KEY = os.environ["TOLLGATE_KEY"]

CITIES = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    CITIES.append(city)
    return f"Sunny and 22 C in {city}"


async def main():
    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0)
    set_default_openai_client(client, use_for_tracing=False)
    set_default_openai_api("responses")
    agent = Agent(
        name="forecaster",
        instructions="Answer with the weather, using the tool.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model="default", openai_client=client),
    )
    result = await Runner.run(agent, "What is the weather in Paris?")
    print(json.dumps({"final": result.final_output, "cities": CITIES}, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
