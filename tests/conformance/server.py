"""Upstream MCP server for the conformance comparison: the official Python SDK (`mcp` 2.3.0).

The fixtures the `@modelcontextprotocol/conformance` server scenarios call (their names and the
results they expect are in each scenario's description: `conformance list --server`, and the
suite's dist/index.js), on Streamable HTTP at 127.0.0.1:<port>/mcp with stateful sessions and
SSE responses, the way tests/interop/server.py serves its tools.

DNS-rebinding protection is ON, as a local server should have it: the SDK's
TransportSecuritySettings accept only loopback Host and Origin values, so a request naming
another host gets 421/403 directly. `mcp-resume proxy` in front of it must not make that check
pass (the `dns-rebinding-protection` scenario, issue 24).

Usage: server.py [--port 0]
Prints one line `server.py listening on http://127.0.0.1:<port>/mcp` once it accepts connections.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer, UserMessage
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import (
    AudioContent,
    Completion,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, Field

# A 1x1 PNG and a minimal WAV: the scenarios check the content type and that data is base64.
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

server = MCPServer("conformance-upstream", log_level="WARNING")

# ------------------------------------------------------------------------------------------------
# Tools


@server.tool()
def test_simple_text() -> str:
    """Return one text block."""
    return "This is a simple text response for testing."


@server.tool()
def test_image_content() -> list[ImageContent]:
    """Return one image block."""
    return [ImageContent(data=PNG_BASE64, mime_type="image/png")]


@server.tool()
def test_audio_content() -> list[AudioContent]:
    """Return one audio block."""
    return [AudioContent(data=WAV_BASE64, mime_type="audio/wav")]


@server.tool()
def test_embedded_resource() -> list[EmbeddedResource]:
    """Return one embedded text resource."""
    return [
        EmbeddedResource(
            resource=TextResourceContents(
                uri="test://embedded-resource",
                mime_type="text/plain",
                text="This is an embedded resource content.",
            )
        )
    ]


@server.tool()
def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
    """Return a text, an image and an embedded resource block."""
    return [
        TextContent(text="Multiple content types test:"),
        ImageContent(data=PNG_BASE64, mime_type="image/png"),
        EmbeddedResource(
            resource=TextResourceContents(
                uri="test://mixed-content-resource",
                mime_type="application/json",
                text=json.dumps({"test": "data", "value": 123}),
            )
        ),
    ]


@server.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Send three log notifications while running."""
    for text in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.info(text)
        await anyio.sleep(0.05)
    return "Tool with logging executed successfully"


@server.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Report progress 0, 50 and 100 of 100 on the request's progress token."""
    for step in (0, 50, 100):
        await ctx.report_progress(progress=step, total=100, message=f"Completed step {step} of 100")
        await anyio.sleep(0.05)
    meta = ctx.request_context.meta
    return str(meta.progress_token if meta is not None and meta.progress_token is not None else 0)


@server.tool()
def test_error_handling() -> str:
    """Fail: the result carries isError."""
    raise RuntimeError("This tool intentionally returns an error for testing")


@server.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Ask the client's LLM (sampling/createMessage) and return its answer."""
    # On the call's own stream, as ctx.elicit does: without related_request_id the SDK sends the
    # request on the session's GET stream, and drops it (no event store here) when the client's
    # GET has not reached the server yet, so the call waits for ever.
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(text=prompt))],
        max_tokens=100,
        related_request_id=ctx.request_id,
    )
    content = result.content
    return f"LLM response: {content.text if getattr(content, 'type', None) == 'text' else 'No response'}"


class UserResponse(BaseModel):
    response: str = Field(description="User's response")


@server.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    """Ask the user (elicitation/create) for one string."""
    result = await ctx.elicit(message=message, schema=UserResponse)
    content = result.data.model_dump_json() if result.action == "accept" else "{}"
    return f"User response: action={result.action}, content={content}"


class DefaultsSchema(BaseModel):
    """Every primitive type with a default (SEP-1034)."""

    name: str = Field(default="John Doe", description="User name")
    age: int = Field(default=30, description="User age")
    score: float = Field(default=95.5, description="User score")
    status: str = Field(
        default="active", description="User status", json_schema_extra={"enum": ["active", "inactive", "pending"]}
    )
    verified: bool = Field(default=True, description="Verification status")


@server.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Elicit with a default on every field."""
    result = await ctx.elicit(message="Please provide user information", schema=DefaultsSchema)
    content = result.data.model_dump_json() if result.action == "accept" else "{}"
    return f"Elicitation result: action={result.action}, content={content}"


class EnumsSchema(BaseModel):
    """The enum shapes of SEP-1330: plain, titled, multi-select, titled multi-select, legacy."""

    untitledSingle: str = Field(
        description="Simple enum without titles", json_schema_extra={"enum": ["active", "inactive", "pending"]}
    )
    titledSingle: str = Field(
        description="Enum with titled options (oneOf)",
        json_schema_extra={
            "oneOf": [
                {"const": "low", "title": "Low Priority"},
                {"const": "medium", "title": "Medium Priority"},
                {"const": "high", "title": "High Priority"},
            ]
        },
    )
    untitledMulti: list[str] = Field(
        description="Multi-select without titles",
        json_schema_extra={"items": {"type": "string", "enum": ["read", "write", "execute"]}},
    )
    titledMulti: list[str] = Field(
        description="Multi-select with titled options",
        json_schema_extra={
            "items": {
                "anyOf": [
                    {"const": "feature", "title": "New Feature"},
                    {"const": "bug", "title": "Bug Fix"},
                    {"const": "docs", "title": "Documentation"},
                ]
            }
        },
    )
    legacyEnum: str = Field(
        description="Legacy enum with enumNames",
        json_schema_extra={"enum": ["small", "medium", "large"], "enumNames": ["Small Size", "Medium Size", "Large Size"]},
    )


@server.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Elicit with every enum shape."""
    result = await ctx.elicit(message="Please select values using different enum schema types", schema=EnumsSchema)
    content = result.data.model_dump_json() if result.action == "accept" else "{}"
    return f"Elicitation completed: action={result.action}, content={content}"


@server.tool()
async def test_reconnection(ctx: Context) -> str:
    """Close the call's SSE stream mid-call (SEP-1699); the client resumes it."""
    await ctx.info("Before disconnect")
    await ctx.close_sse_stream()
    await anyio.sleep(0.2)
    await ctx.info("After reconnect")
    return "Reconnection test completed"


# ------------------------------------------------------------------------------------------------
# Resources


@server.resource("test://static-text", mime_type="text/plain")
def static_text() -> str:
    """A fixed text resource."""
    return "This is the content of the static text resource."


@server.resource("test://static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A fixed binary resource (the PNG)."""
    return base64.b64decode(PNG_BASE64)


@server.resource("test://template/{id}/data", mime_type="application/json")
def template_data(id: str) -> str:
    """A template resource: `{id}` is substituted."""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@server.resource("test://watched-resource", mime_type="text/plain")
def watched() -> str:
    """A resource clients subscribe to."""
    return "Watched resource content"


subscriptions: set[str] = set()


async def subscribe(ctx, params: SubscribeRequestParams) -> EmptyResult:
    subscriptions.add(str(params.uri))
    return EmptyResult()


async def unsubscribe(ctx, params: UnsubscribeRequestParams) -> EmptyResult:
    subscriptions.discard(str(params.uri))
    return EmptyResult()


async def set_logging_level(ctx, params: SetLevelRequestParams) -> EmptyResult:
    return EmptyResult()


# The SDK has no MCPServer-level decorators for these; registering the handlers on the
# low-level server also declares the capabilities (resources.subscribe, logging).
server._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
server._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_logging_level)


@server.completion()
async def complete(ref, argument, context) -> Completion:
    """Completion is declared and answers; no suggestions are needed by the scenario."""
    return Completion(values=[], total=0, has_more=False)


# ------------------------------------------------------------------------------------------------
# Prompts


@server.prompt()
def test_simple_prompt() -> list[UserMessage]:
    """A prompt without arguments."""
    return [UserMessage(TextContent(text="This is a simple prompt for testing."))]


@server.prompt()
def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
    """A prompt with two required arguments."""
    return [UserMessage(TextContent(text=f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]


@server.prompt()
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
    """A prompt that embeds the resource it is given."""
    return [
        UserMessage(
            EmbeddedResource(
                resource=TextResourceContents(
                    uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
                )
            )
        ),
        UserMessage(TextContent(text="Please process the embedded resource above.")),
    ]


@server.prompt()
def test_prompt_with_image() -> list[UserMessage]:
    """A prompt with an image."""
    return [
        UserMessage(ImageContent(data=PNG_BASE64, mime_type="image/png")),
        UserMessage(TextContent(text="Please analyze the image above.")),
    ]


# ------------------------------------------------------------------------------------------------


async def main(port: int) -> None:
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=False,
        stateless_http=False,
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*"],
        ),
        host="127.0.0.1",
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    bound = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=30, lifespan="on"))

    async def announce() -> None:
        while not uv.started:
            await anyio.sleep(0.02)
        print(f"server.py listening on http://127.0.0.1:{bound}/mcp", flush=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        await uv.serve(sockets=[sock])
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        anyio.run(main, args.port)
    except KeyboardInterrupt:
        sys.exit(0)
