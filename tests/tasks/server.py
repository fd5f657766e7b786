"""Upstream for the Tasks gateway proof: the official Python SDK (`mcp` 2.3.0), which has NO task support.

It serves every fixture of tests/conformance/server.py (imported from there, so the rest of the
conformance suite's server scenarios run against the same server) plus the fixture tools the
suite's `tasks-*` scenarios name (`src/scenarios/server/tasks/*.ts` in
@modelcontextprotocol/conformance; each scenario's description lists them):

- `greet`: answers at once, "Hello, {name}!".
- `slow_compute`: sleeps `seconds` (reporting progress each second when the request carries a
  progress token), then answers. `seconds: 0` answers at once. When the call is cancelled it
  prints `slow_compute '<label>': cancelled`.
- `failing_job`: a tool execution error (`isError: true`) after about a second.
- `protocol_error_job`: a JSON-RPC error after about a second.
- `confirm_delete`: one `elicitation/create` input request (SEP-2322, `InputRequiredResult`),
  then answers once the response comes back.
- `multi_input`: two input requests at once; a retry that answers only some of them is asked the
  rest again, under the same keys (the answers so far ride `requestState`).
- `test_tool_with_task`: round 1 asks for a user name; round 2, with the answer, works for
  `TASK_ROUND_SECONDS` and answers with the name in its text.

The server itself never answers with a task: `CreateTaskResult`, `tasks/*` and the extension in
`server/discover` come from `mcp-resume proxy --tasks` in front of it, or not at all. Run
directly, the suite's `tasks-*` scenarios fail (that is the point of the gateway).

Usage: server.py [--port 0]
Prints one line `server.py listening on http://127.0.0.1:<port>/mcp` once it accepts connections.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

# The conformance fixture server: its module-level `server` gains the tools below.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance"))
import server as conformance  # noqa: E402

from mcp.server.mcpserver import Context  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402
from mcp_types import (  # noqa: E402
    INTERNAL_ERROR,
    ElicitRequest,
    ElicitRequestFormParams,
    InputRequiredResult,
)

server = conformance.server

# How long `test_tool_with_task` works on its final round: longer than the gateway's task
# threshold in tests/tasks/run.sh (3 s), so that round becomes a task while round 1 (the input
# request, answered at once) stays an ordinary result; within the suite's 10 s wait for the end.
TASK_ROUND_SECONDS = 5.0
# How long `failing_job` and `protocol_error_job` take before they fail ("after ~1s").
FAILURE_DELAY_SECONDS = 1.0


def _elicit(message: str, *properties: str) -> ElicitRequest:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: {"type": "string" if name != "confirm" else "boolean"} for name in properties},
    }
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def _field(value: Any, name: str) -> Any:
    """A field of an input response, whether the SDK parsed it into a model or left it a dict."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _answers(ctx: Context) -> dict[str, Any]:
    """The input responses of this round plus those carried in `requestState` from earlier rounds."""
    answered: dict[str, Any] = {}
    if ctx.request_state:
        try:
            answered.update(json.loads(ctx.request_state))
        except ValueError:
            pass
    for key, response in (ctx.input_responses or {}).items():
        content = _field(response, "content")
        answered[key] = {"action": _field(response, "action"), "content": dict(content) if content else {}}
    return answered


def _describe(answer: dict[str, Any]) -> str:
    values = ", ".join(f"{k}={v}" for k, v in sorted((answer.get("content") or {}).items()))
    return f"{answer.get('action')}({values})"


@server.tool()
def greet(name: str) -> str:
    """Answer at once: Hello, {name}!"""
    return f"Hello, {name}!"


@server.tool()
async def slow_compute(seconds: float, ctx: Context, label: str = "") -> str:
    """Work for `seconds` (progress each second), then answer."""
    whole = int(seconds)
    try:
        for second in range(whole):
            await ctx.report_progress(progress=second, total=seconds, message=f"computing {label}: {second}/{whole} s")
            await anyio.sleep(1)
        await anyio.sleep(seconds - whole)
    except anyio.get_cancelled_exc_class():
        # The call was cancelled (at 2026-07-28: its response stream was closed); the fault run
        # looks for this line to see that a cancelled task stopped the upstream's work.
        print(f"slow_compute {label!r}: cancelled", flush=True)
        raise
    return f"computed {label} in {seconds} s"


@server.tool()
async def failing_job() -> str:
    """Fail after about a second with a tool execution error (`isError: true`)."""
    await anyio.sleep(FAILURE_DELAY_SECONDS)
    raise ToolError("failing_job failed, as it always does")


@server.tool()
async def protocol_error_job() -> str:
    """Fail after about a second with a JSON-RPC (protocol-level) error."""
    await anyio.sleep(FAILURE_DELAY_SECONDS)
    raise MCPError(code=INTERNAL_ERROR, message="protocol_error_job: internal failure, as it always does")


@server.tool()
async def confirm_delete(filename: str, ctx: Context) -> str | InputRequiredResult:
    """Ask for a confirmation (one input request), then answer."""
    answers = _answers(ctx)
    if "confirm" not in answers:
        return InputRequiredResult(input_requests={"confirm": _elicit(f"Delete {filename}?", "confirm")})
    answer = answers["confirm"]
    confirmed = answer.get("action") == "accept" and bool((answer.get("content") or {}).get("confirm", True))
    return f"{'deleted' if confirmed else 'kept'} {filename}: {_describe(answer)}"


MULTI_INPUT_KEYS = ("first", "second")


@server.tool()
async def multi_input(ctx: Context) -> str | InputRequiredResult:
    """Ask two questions at once; ask again only those not answered yet (same keys)."""
    answers = _answers(ctx)
    missing = [key for key in MULTI_INPUT_KEYS if key not in answers]
    if missing:
        return InputRequiredResult(
            input_requests={key: _elicit(f"multi_input: the {key} answer", "name", "confirm") for key in missing},
            request_state=json.dumps(answers) if answers else None,
        )
    return "multi_input: " + "; ".join(f"{key}={_describe(answers[key])}" for key in MULTI_INPUT_KEYS)


@server.tool()
async def test_tool_with_task(ctx: Context) -> str | InputRequiredResult:
    """Round 1 asks for a user name; round 2 works for a while, then greets that name."""
    answers = _answers(ctx)
    if "user_name" not in answers:
        return InputRequiredResult(input_requests={"user_name": _elicit("Your name?", "name")})
    content = answers["user_name"].get("content") or {}
    name = " ".join(str(value) for value in content.values()) or "nobody"
    await anyio.sleep(TASK_ROUND_SECONDS)
    return f"Hello, {name}! (gathered before the task)"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        anyio.run(conformance.main, args.port)
    except KeyboardInterrupt:
        sys.exit(0)
