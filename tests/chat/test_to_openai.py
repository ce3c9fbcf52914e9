"""`prompt.to_openai()` gives the keyword arguments of an OpenAI chat completions call: the
official `openai` package sends them, as they are, to a stub server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest

from promptory import Prompt

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "ok"},
            "finish_reason": "stop",
        }
    ],
}

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


class StubOpenAI:
    """An HTTP server answering every POST with one chat completion, keeping the requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.requests.append((self.path, json.loads(self.rfile.read(length))))
                body = json.dumps(COMPLETION).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def stub() -> Iterator[StubOpenAI]:
    with StubOpenAI() as server:
        yield server


def chat_prompt(**fields: Any) -> Prompt:
    body = (
        "system:\nYou answer in JSON.\n\n"
        "{% for m in history %}\n{{m.role}}:\n{{m.content}}\n{% endfor %}\n"
        "user:\n{{ question }}\n"
    )
    return Prompt(id="p", name="weather.ask", body=body, **fields)


def test_openai_sends_the_kwargs_as_they_are(stub: StubOpenAI) -> None:
    prompt = chat_prompt(
        model={
            "default": "gpt-4o-mini",
            "temperature": 0.2,
            "max_tokens": 300,
            "top_p": 0.9,
            "stop": ["END"],
            "provider": "openai",
        },
        tools=[WEATHER_TOOL],
        response_format=ANSWER_SCHEMA,
    )
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    kwargs = prompt.to_openai({"question": "Rain in Oslo?"}, history=history)
    client = openai.OpenAI(base_url=stub.url, api_key="sk-test", max_retries=0, timeout=10)
    try:
        completion = client.chat.completions.create(**kwargs)
    finally:
        client.close()
    assert completion.choices[0].message.content == "ok"
    [(path, sent)] = stub.requests
    assert path == "/v1/chat/completions"
    assert sent == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You answer in JSON."},
            *history,
            {"role": "user", "content": "Rain in Oslo?"},
        ],
        "temperature": 0.2,
        "max_tokens": 300,
        "top_p": 0.9,
        "stop": ["END"],
        "tools": [{"type": "function", "function": WEATHER_TOOL}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "weather_ask", "schema": ANSWER_SCHEMA},
        },
    }


def test_prompty_model_parameters_and_openai_shapes_pass_as_written() -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True},
    }
    tool = {"type": "function", "function": WEATHER_TOOL}
    prompt = chat_prompt(
        model={
            "api": "chat",
            "configuration": {"type": "azure_openai", "azure_deployment": "gpt-4o"},
            "parameters": {"max_tokens": 128, "temperature": 0},
        },
        tools=[tool],
        response_format=response_format,
    )
    kwargs = prompt.to_openai({"question": "q"})
    assert kwargs["model"] == "gpt-4o"
    assert (kwargs["max_tokens"], kwargs["temperature"]) == (128, 0)
    assert kwargs["tools"] == [tool]
    assert kwargs["response_format"] == response_format


def test_the_kwargs_are_plain_and_belong_to_the_caller() -> None:
    prompt = chat_prompt(model={"default": "m", "stop": ["x"]}, tools=[WEATHER_TOOL])
    kwargs = prompt.to_openai({"question": "q"})
    kwargs["stop"].append("y")
    kwargs["tools"][0]["function"]["name"] = "changed"
    assert prompt.model["stop"] == ["x"]
    assert prompt.tools[0]["name"] == "get_weather"
    assert type(kwargs["tools"][0]["function"]["parameters"]) is dict


def test_a_prompt_without_a_model_name_leaves_model_out() -> None:
    kwargs = Prompt(id="p", name="n", body="Hi").to_openai()
    assert kwargs == {"messages": [{"role": "system", "content": "Hi"}]}
