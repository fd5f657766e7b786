"""Upstream MCP server for the interop tests: the official Python SDK (`mcp` 2.3.0).

Streamable HTTP on 127.0.0.1:<port>/mcp with stateful sessions and NO event store of its
own: the SDK server cannot resume anything by itself; every resume the clients get comes
from `mcp-resume proxy` in front of it. The benchmarks (benches/e2e) also run it with
`--event-store-example PATH`: the SDK's own example `InMemoryEventStore`, loaded from the
`event_store.py` that `benches/run.sh` takes out of the `mcp` 2.3.0 source distribution.

Tools (`tag` is any label the test gives a call; the fault proxy logs it, the result echoes it):
  burst(count=200, interval_ms=10, tag)    `count` progress notifications, one every interval, then a result
  long_task(seconds=20, count=200, tag)    the same spread over `seconds` (poll and restart tests)

Usage: server.py [--port 0] [--event-store-example PATH]
Prints one line `server.py listening on http://127.0.0.1:<port>/mcp` once it accepts connections.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import sys

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("interop-upstream", log_level="WARNING")


async def _count(ctx: Context, count: int, interval: float, label: str) -> str:
    for step in range(1, count + 1):
        await anyio.sleep(interval)
        await ctx.report_progress(step, count, f"{label} {step}/{count}")
    return f"{label}: sent {count} progress notifications"


@server.tool()
async def burst(ctx: Context, count: int = 200, interval_ms: int = 10, tag: str = "") -> str:
    """Send `count` progress notifications, one every `interval_ms`, then return."""
    return await _count(ctx, count, interval_ms / 1000.0, f"burst {tag}".strip())


@server.tool()
async def long_task(ctx: Context, seconds: float = 20.0, count: int = 200, tag: str = "") -> str:
    """Send `count` progress notifications evenly over `seconds`, then return."""
    return await _count(ctx, count, seconds / count, f"long_task {tag}".strip())


def example_event_store(path: str):
    """The SDK's example `InMemoryEventStore`, from its `event_store.py` at `path`."""
    spec = importlib.util.spec_from_file_location("sdk_example_event_store", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.InMemoryEventStore()


async def main(port: int, event_store_example: str | None) -> None:
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=False,  # SSE responses: what mcp-resume makes resumable
        stateless_http=False,  # sessions: Mcp-Session-Id on every request
        # No resumability of its own, unless the benchmarks ask for the SDK's example store.
        event_store=example_event_store(event_store_example) if event_store_example else None,
        host="127.0.0.1",
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=30, lifespan="on")
    uv = uvicorn.Server(config)

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
    parser.add_argument("--event-store-example", default=None, help="path of the SDK's example event_store.py")
    args = parser.parse_args()
    try:
        anyio.run(main, args.port, args.event_store_example)
    except KeyboardInterrupt:
        sys.exit(0)
