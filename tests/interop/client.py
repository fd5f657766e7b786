"""Python SDK client (`mcp` 2.3.0) for the interop tests, unmodified but for one knob.

The SDK's `mcp.client.streamable_http` resumes a broken SSE response with GET + Last-Event-ID
by itself (`_handle_reconnection`), giving up after the module-level
`MAX_RECONNECTION_ATTEMPTS` consecutive failures (2 by default). The test raises it by setting
that module attribute (the SDK reads it at each attempt), so the client keeps resuming through
the fault proxy's cuts. Nothing else of the SDK is changed: every reconnect below is the SDK's.

Each `Last-Event-ID` the SDK sends is recorded from an httpx2 request hook, and every progress
notification the application receives from the progress callback; `check.py` compares those
with the fault proxy's log.

Modes:
  faults   --calls N calls of `burst`, --concurrency at a time, in one session
  poll     one `long_task` call through `mcp-resume proxy --poll-after`
  restart  one `long_task` call, through a fault proxy that cuts it once; while the SDK waits
           the server's `retry` before resuming, the caller SIGKILLs mcp-resume and starts it
           again on the same store. The SDK's resume must bring every notification committed
           meanwhile, then the call must fail promptly (400 at the end of the abandoned stream).
           At the end the stream is replayed from its start with a plain GET: what was committed.

Writes --results FILE (JSON) and prints one summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.client.streamable_http as streamable_http
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


class Recorder:
    """What the SDK sent (from an httpx2 hook) and what the application received."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.resumes: list[dict[str, Any]] = []
        self.session_id: str | None = None
        self.protocol_version: str | None = None

    async def on_request(self, request: httpx2.Request) -> None:
        session = request.headers.get("mcp-session-id")
        if session:
            self.session_id = session
        version = request.headers.get("mcp-protocol-version")
        if version:
            self.protocol_version = version
        last = request.headers.get("last-event-id")
        if request.method == "GET" and last:
            self.resumes.append({"t": round(time.monotonic() - self.started, 3), "last_event_id": last})


def http_client(recorder: Recorder) -> httpx2.AsyncClient:
    # The SDK's own defaults (create_mcp_http_client): 30 s, 300 s read; plus the hook.
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(30.0, read=300.0),
        event_hooks={"request": [recorder.on_request]},
    )


async def settle(receipts: list[int]) -> None:
    """Progress callbacks run as spawned tasks: let the last ones land before counting."""
    seen = -1
    for _ in range(50):
        if len(receipts) == seen:
            return
        seen = len(receipts)
        await anyio.sleep(0.02)


async def one_call(session: ClientSession, tool: str, args: dict[str, Any], tag: str, timeout: float) -> dict[str, Any]:
    receipts: list[int] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        receipts.append(int(value))

    started = time.monotonic()
    record: dict[str, Any] = {"tag": tag, "ok": False, "error": None}
    try:
        result = await session.call_tool(tool, {**args, "tag": tag}, read_timeout_seconds=timeout,
                                          progress_callback=progress)
        record["ok"] = not result.is_error
        if result.is_error:
            record["error"] = f"tool error: {result.content}"
    except Exception as exc:  # the SDK raises MCPError when it gives up
        record["error"] = f"{type(exc).__name__}: {exc}"
    record["seconds"] = round(time.monotonic() - started, 3)
    record["ended_at"] = time.monotonic()
    await settle(receipts)
    record["receipts"] = receipts
    return record


async def run_faults(args: argparse.Namespace, recorder: Recorder) -> dict[str, Any]:
    tool_args = json.loads(args.args)
    calls: list[dict[str, Any]] = []
    limiter = anyio.CapacityLimiter(args.concurrency)
    async with http_client(recorder) as http:
        async with streamable_http_client(args.url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()

                async def worker(index: int) -> None:
                    async with limiter:
                        record = await one_call(session, args.tool, tool_args, f"py-{index}", args.timeout)
                        record.pop("ended_at", None)
                        calls.append(record)

                async with anyio.create_task_group() as tg:
                    for index in range(args.calls):
                        tg.start_soon(worker, index)
    return {"client": "python", "mode": "faults", "calls": calls, "resumes": recorder.resumes}


async def run_poll(args: argparse.Namespace, recorder: Recorder) -> dict[str, Any]:
    async with http_client(recorder) as http:
        async with streamable_http_client(args.url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                record = await one_call(session, args.tool, json.loads(args.args), "py-poll", args.timeout)
                record.pop("ended_at", None)
    return {"client": "python", "mode": "poll", "calls": [record], "resumes": recorder.resumes}


async def committed_progress(http: httpx2.AsyncClient, url: str, recorder: Recorder) -> dict[str, Any]:
    """Replays the abandoned stream from its start (`<stream>.0`): what the store committed."""
    if not recorder.resumes:
        return {"error": "the SDK never resumed, so the stream id is unknown"}
    # The call's stream: of the streams the SDK resumed, the one it held the newest event of (the
    # standalone GET stream, also resumed after the kill, carries no event here: its ids stay at .0).
    def seq(event_id: str) -> int:
        return int(event_id.rsplit(".", 1)[1]) if event_id.rsplit(".", 1)[-1].isdigit() else -1

    newest = max(recorder.resumes, key=lambda r: seq(r["last_event_id"]))
    stream = newest["last_event_id"].split(".")[0]
    headers = {
        "accept": "text/event-stream",
        "last-event-id": f"{stream}.0",
        "mcp-session-id": recorder.session_id or "",
        "mcp-protocol-version": recorder.protocol_version or "2025-11-25",
    }
    values: list[int] = []
    ended = False
    try:
        with anyio.fail_after(20):
            async with http.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    return {"error": f"replay from {stream}.0 answered {response.status_code}"}
                async for sse in httpx2.EventSource(response).__aiter__():
                    if not sse.data:
                        continue
                    message = json.loads(sse.data)
                    if message.get("method") == "notifications/progress":
                        values.append(int(message["params"]["progress"]))
                ended = True
    except TimeoutError:
        pass
    return {"stream": stream, "values": values, "ended": ended}


async def run_restart(args: argparse.Namespace, recorder: Recorder) -> dict[str, Any]:
    async with http_client(recorder) as http:
        async with streamable_http_client(args.url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                record = await one_call(session, args.tool, json.loads(args.args), "py-restart", args.timeout)
                record["ended_wall"] = time.time()
                # Before the session's DELETE (which purges its streams): what was committed?
                committed = await committed_progress(http, args.url, recorder)
    record.pop("ended_at", None)
    return {"client": "python", "mode": "restart", "calls": [record], "resumes": recorder.resumes,
            "committed": committed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=["faults", "poll", "restart"], default="faults")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--tool", default="burst")
    parser.add_argument("--args", default='{"count": 200, "interval_ms": 10}')
    parser.add_argument("--timeout", type=float, default=120.0, help="read timeout of each call, seconds")
    parser.add_argument("--max-reconnection-attempts", type=int, default=1000,
                        help="value for mcp.client.streamable_http.MAX_RECONNECTION_ATTEMPTS (SDK default 2)")
    parser.add_argument("--results", required=True)
    args = parser.parse_args()

    # The one knob: how many consecutive failed reconnection attempts the SDK tolerates.
    streamable_http.MAX_RECONNECTION_ATTEMPTS = args.max_reconnection_attempts

    recorder = Recorder()
    runner = {"faults": run_faults, "poll": run_poll, "restart": run_restart}[args.mode]
    started = time.monotonic()
    results = anyio.run(runner, args, recorder)
    results["seconds"] = round(time.monotonic() - started, 3)
    results["max_reconnection_attempts"] = args.max_reconnection_attempts
    Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
    ok = sum(1 for c in results["calls"] if c["ok"])
    print(f"client.py {args.mode}: calls={len(results['calls'])} ok={ok} resumes={len(recorder.resumes)} "
          f"seconds={results['seconds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
