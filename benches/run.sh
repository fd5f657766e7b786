#!/usr/bin/env bash
# The comparative benchmarks in one command (see benches/e2e/main.rs for what each row does):
#
#   bash benches/run.sh          # writes BENCHMARKS.md and benches/scaling.svg
#
# Sets up what the Python SDK rows need, pinned, under target/interop/ (shared with the interop
# suite, reused when present): a virtual environment with mcp==2.3.0 from PyPI, and the SDK's
# example in-memory event store, taken out of the same version's source distribution on PyPI
# (the example is not part of the installed package). Then runs `cargo bench --bench e2e`.
# Extra arguments go to cargo. Env: MCP_RESUME_BENCH_ONLY, MCP_RESUME_BENCH_QUICK (see main.rs).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WORK="$ROOT/target/interop"
VENV="$WORK/venv"
# shellcheck source=../tests/interop/python-sdk.sh
source "$ROOT/tests/interop/python-sdk.sh"

mkdir -p "$WORK"
ensure_python_sdk "$VENV"
EXAMPLE="$WORK/sdk-example-$PY_MCP_VERSION/event_store.py"
if [[ ! -f "$EXAMPLE" ]]; then
    download="$(mktemp -d)"
    trap 'rm -rf "$download"' EXIT
    "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary :all: "mcp==$PY_MCP_VERSION" -d "$download"
    member="mcp-$PY_MCP_VERSION/examples/servers/simple-streamablehttp/mcp_simple_streamablehttp/event_store.py"
    tar -xzf "$download/mcp-$PY_MCP_VERSION.tar.gz" -C "$download" "$member"
    mkdir -p "$(dirname "$EXAMPLE")"
    cp "$download/$member" "$EXAMPLE"
fi
echo "benches: Python SDK mcp $PY_MCP_VERSION ($("$VENV/bin/python" --version)); example event store $EXAMPLE"

# Row 6 holds 10,000 connections open, in the bench and in its server process each.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ "$(ulimit -n)" != unlimited ]] && (( $(ulimit -n) < 11000 )); then
    echo "benches: warning: $(ulimit -n) file descriptors allowed (the hard limit); row 6 needs about 11,000" >&2
fi

SECONDS=0
MCP_RESUME_BENCH_PYTHON="$VENV/bin/python" MCP_RESUME_BENCH_PY_EXAMPLE="$EXAMPLE" \
    cargo bench --bench e2e "$@"
echo "benches: done in ${SECONDS}s"
