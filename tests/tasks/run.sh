#!/usr/bin/env bash
# The Tasks gateway (issue 22) proven with software nobody here wrote:
#   1. the official MCP conformance suite (@modelcontextprotocol/conformance): every `tasks-*`
#      scenario through `mcp-resume proxy --tasks` (SQLite) in front of tests/tasks/server.py, a
#      Python SDK (mcp 2.3.0) server with no task support, must pass; the same scenarios directly
#      are shown for contrast. The rest of the suite's active server scenarios at 2026-07-28 run
#      directly and through the gateway: no check may fail through it that does not fail
#      directly (tests/conformance/compare.py).
#   2. rmcp's client (3.11, which implements the extension; examples/tasks_client.rs) calls a
#      slow tool through the gateway, gets a task, polls it to completion and must get the result
#      the server gives directly; then a client is SIGKILLed once it has the task id and a new
#      client polls that id to completion.
# Prints the tables; exits non-zero on any failure.
#
#   bash tests/tasks/run.sh
#
# Installs what it needs itself, pinned, under target/ (reused when present): the conformance
# suite's npm packages (the versions tests/conformance/run.sh pins) and the interop venv with
# mcp==2.3.0. Builds `mcp-resume` and the example in release mode with --all-features (the build
# the interop and conformance runs share). Every process listens on 127.0.0.1 (free ports); all
# are stopped on exit, whatever happens. TASKS_KEEP=1 keeps the logs (always kept on failure);
# TASKS_GATEWAY_ARGS replaces the gateway's options (below).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/tests/tasks"
WORK="$ROOT/target/tasks"
NODE_DIR="$ROOT/target/conformance/node"
VENV="$ROOT/target/interop/venv"
# The newest release of the suite, and the first with the `tasks-*` server scenarios.
SUITE_VERSION="0.2.0-alpha.12"
GLOB_VERSION="15.0.0"
SPEC_VERSION="2026-07-28"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# The gateway as this run configures it: tasks on; the fixtures the scenarios call "task-
# supporting" always become tasks (threshold 0s); every other tool after 3 s, not the default
# (about 1 s), so that a sync-only fixture (`greet`) stays an ordinary result even while twenty
# suite processes load the machine (the final round of `test_tool_with_task` works longer than
# that: server.py's TASK_ROUND_SECONDS); `failing_job` is the suite's task-required tool (-32021
# for a client without the extension).
TASK_TOOLS="slow_compute=0s,failing_job=0s,protocol_error_job=0s,confirm_delete=0s,multi_input=0s"
GATEWAY_ARGS=(--tasks true --task-after 3s --task-tool "$TASK_TOOLS" --task-required failing_job)
# TASKS_GATEWAY_ARGS replaces them (split on spaces): e.g. without --task-required, to see the
# verdict catch the failing check (tasks-required-task-error).
[[ -n ${TASKS_GATEWAY_ARGS:-} ]] && read -r -a GATEWAY_ARGS <<<"$TASKS_GATEWAY_ARGS"

# shellcheck source=../interop/lib.sh
source "$ROOT/tests/interop/lib.sh"
KEEP_LOGS="${TASKS_KEEP:-}"
begin_run tasks "$WORK"

# ---------------------------------------------------------------------------------------------
section "tasks: tools (pinned, under target/)"
ensure_python_sdk "$VENV"
PY="$VENV/bin/python"
log "python sdk: mcp $("$PY" -c 'import importlib.metadata as m; print(m.version("mcp"))')"
pkg_version() { node -p "require('$1').version" 2>/dev/null || true; }
SUITE_PKG="$NODE_DIR/node_modules/@modelcontextprotocol/conformance/package.json"
if [[ "$(pkg_version "$SUITE_PKG")" != "$SUITE_VERSION" ||
    "$(pkg_version "$NODE_DIR/node_modules/glob/package.json")" != "$GLOB_VERSION" ]]; then
    mkdir -p "$NODE_DIR"
    [[ -f "$NODE_DIR/package.json" ]] || echo '{"name": "mcp-resume-conformance", "private": true}' >"$NODE_DIR/package.json"
    (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error \
        "@modelcontextprotocol/conformance@$SUITE_VERSION" "glob@$GLOB_VERSION" >/dev/null)
fi
SUITE=("node")
if ! node -e 'process.exit(typeof require("node:fs").globSync === "function" ? 0 : 1)'; then
    cp "$ROOT/tests/conformance/node20.mjs" "$ROOT/tests/conformance/node20-hooks.mjs" \
        "$ROOT/tests/conformance/fs-shim.mjs" "$NODE_DIR/"
    SUITE+=("--import" "$NODE_DIR/node20.mjs")
fi
SUITE+=("$NODE_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js")
log "suite: @modelcontextprotocol/conformance $(pkg_version "$SUITE_PKG") (node $(node --version))"
# Every extension scenario of the tasks extension this release has, by its own listing.
mapfile -t TASK_SCENARIOS < <("${SUITE[@]}" list | sed -n 's/^ *- \(tasks-[a-z0-9-]*\) \[extension\]$/\1/p')
[[ ${#TASK_SCENARIOS[@]} -gt 0 ]] || { echo "tasks: the suite lists no tasks-* scenario" >&2; exit 1; }
log "tasks-* scenarios: ${TASK_SCENARIOS[*]}"

# ---------------------------------------------------------------------------------------------
section "tasks: build"
cargo build --release --all-features --bin mcp-resume --example tasks_client
MCP_RESUME="$TARGET_DIR/release/mcp-resume"
TASKS_CLIENT="$TARGET_DIR/release/examples/tasks_client"

# ---------------------------------------------------------------------------------------------
section "tasks: the Python SDK server (no task support) and mcp-resume proxy --tasks on SQLite"
start upstream "$PY" "$HERE/server.py" --port 0
line=$(wait_line "$RUN/upstream.out" '^server.py listening on http://' 60 "$STARTED_PID")
UPSTREAM=${line#server.py listening on }
start_mcp_resume gateway --listen 127.0.0.1:0 --store "sqlite:$RUN/gateway.db" "${GATEWAY_ARGS[@]}"
GATEWAY="http://$MR_ADDR/mcp"
log "upstream $UPSTREAM; gateway $GATEWAY (${GATEWAY_ARGS[*]})"

# ---------------------------------------------------------------------------------------------
# suite NAME URL ARGS...: one suite run, results in $RUN/NAME/; its exit status is not the
# verdict (verdict.py and compare.py are).
suite() {
    local name=$1 url=$2 rc=0
    shift 2
    run_client "suite-$name" 300 "${SUITE[@]}" server --url "$url" "$@" -o "$RUN/$name" || rc=$?
    log "suite $name: exit $rc"
}

section "tasks: the conformance suite, directly and through the gateway (all at once)"
RUN_PIDS=()
for scenario in "${TASK_SCENARIOS[@]}"; do
    suite "tasks-gateway-$scenario" "$GATEWAY" --scenario "$scenario" &
    RUN_PIDS+=($!)
    suite "tasks-direct-$scenario" "$UPSTREAM" --scenario "$scenario" &
    RUN_PIDS+=($!)
done
suite "rest-direct" "$UPSTREAM" --spec-version "$SPEC_VERSION" &
RUN_PIDS+=($!)
suite "rest-gateway" "$GATEWAY" --spec-version "$SPEC_VERSION" &
RUN_PIDS+=($!)
for pid in "${RUN_PIDS[@]}"; do remember "$pid"; done
wait "${RUN_PIDS[@]}" || true
# One directory per side, so the tables read them like one run each.
mkdir -p "$RUN/tasks-direct" "$RUN/tasks-gateway"
for scenario in "${TASK_SCENARIOS[@]}"; do
    for side in direct gateway; do
        [[ -d "$RUN/tasks-$side-$scenario" ]] && mv "$RUN/tasks-$side-$scenario"/* "$RUN/tasks-$side/" 2>/dev/null || true
    done
done

CONFORMANCE_STATUS=0
"$PY" "$HERE/verdict.py" "$RUN/tasks-direct" "$RUN/tasks-gateway" "${TASK_SCENARIOS[@]}" || CONFORMANCE_STATUS=1
"$PY" "$ROOT/tests/conformance/compare.py" \
    "the rest of the suite, Python SDK server, spec version $SPEC_VERSION, directly and through mcp-resume proxy --tasks" \
    "$RUN/rest-direct" "$RUN/rest-gateway" || CONFORMANCE_STATUS=1

# ---------------------------------------------------------------------------------------------
section "tasks: rmcp's client (3.11, implements the extension) through the gateway"
CLIENT_STATUS=0
# client NAME ARGS...: one tasks_client run, its JSON line in $RUN/NAME.out.
client() {
    local name=$1 rc=0
    shift
    run_client "$name" 90 "$TASKS_CLIENT" --deadline-secs 60 "$@" || rc=$?
    log "$name: exit $rc: $(head -c 600 "$RUN/$name.out")"
    [[ $rc -eq 0 ]] || tail -n 5 "$RUN/$name.err" >&2
    return "$rc"
}
# wait_file PATH SECONDS: waits until PATH exists and is not empty.
wait_file() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [[ -s $1 ]] && return 0
        sleep 0.1
    done
    echo "tasks: no $1 after $2 s" >&2
    return 1
}
# same_result A B: the two runs' `result` fields are equal and the second came from a task.
same_result() {
    "$PY" - "$RUN/$1.out" "$RUN/$2.out" <<'EOF'
import json, sys
direct, tasked = (json.loads(open(path).read().strip().splitlines()[-1]) for path in sys.argv[1:])
if tasked.get("task") is None or tasked.get("status") != "completed":
    sys.exit(f"not a completed task: {tasked}")
if "result" not in direct or direct["result"] != tasked.get("result"):
    sys.exit(f"results differ:\n  direct: {direct.get('result')}\n  task:   {tasked.get('result')}")
print(f"same result: {json.dumps(tasked['result'])[:200]}")
EOF
}
ARGS='{"seconds":3,"label":"rmcp"}'
{
    client rmcp-direct --url "$UPSTREAM" --mode call --tool slow_compute --args "$ARGS" --expect complete &&
        client rmcp-gateway --url "$GATEWAY" --mode call --tool slow_compute --args "$ARGS" --expect task &&
        same_result rmcp-direct rmcp-gateway
} || CLIENT_STATUS=1

# The killed client: SIGKILL as soon as it has written the task id, then a new process polls it.
ARGS='{"seconds":5,"label":"rmcp-killed"}'
{
    client rmcp-direct-5s --url "$UPSTREAM" --mode call --tool slow_compute --args "$ARGS" --expect complete &&
        start rmcp-killed "$TASKS_CLIENT" --deadline-secs 60 --url "$GATEWAY" --mode call --tool slow_compute \
            --args "$ARGS" --expect task --task-id-file "$RUN/killed.task" &&
        KILLED_PID=$STARTED_PID &&
        wait_file "$RUN/killed.task" 30 &&
        kill -KILL "$KILLED_PID" && { wait "$KILLED_PID" 2>/dev/null || true; } &&
        log "client SIGKILLed holding task $(cat "$RUN/killed.task")" &&
        client rmcp-new-client --url "$GATEWAY" --mode poll --task-id "$(cat "$RUN/killed.task")" &&
        same_result rmcp-direct-5s rmcp-new-client
} || CLIENT_STATUS=1

section "tasks: $((SECONDS - T0)) s"
[[ $CONFORMANCE_STATUS -eq 0 ]] || echo "tasks: the conformance comparison failed"
[[ $CLIENT_STATUS -eq 0 ]] || echo "tasks: the rmcp client runs failed"
[[ $CONFORMANCE_STATUS -eq 0 && $CLIENT_STATUS -eq 0 ]]
