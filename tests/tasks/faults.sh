#!/usr/bin/env bash
# Faults for the Tasks gateway (issue 22), with rmcp's client (examples/tasks_client.rs) in front
# of tests/tasks/server.py (the Python SDK 2.3.0, no task support):
#   1. SQLite restart: tasks are created through `mcp-resume proxy --tasks`; one is completed,
#      two are working; the proxy is SIGKILLed and started again on the same SQLite file and
#      address. The completed task must still answer with its result; the working ones must be
#      `failed` with a JSON-RPC error that says why; nothing may hang (every wait has a limit).
#   2. Redis fleet: two proxies on one Redis (redis-server started here). A task created on one
#      is polled on the other until it asks for input, updated there (tasks/update) and must
#      complete; another is cancelled on the other instance and must be seen `cancelled`, and
#      the upstream's work for it must stop (server.py logs the cancellation).
# Prints what it saw; exits non-zero on any failure.
#
#   bash tests/tasks/faults.sh
#
# Reuses the interop venv (mcp==2.3.0) and the release build; installs redis-server from the
# distribution's packages when it is missing (as .ci/run does). Every process listens on
# 127.0.0.1; all are stopped on exit. TASKS_KEEP=1 keeps the logs (always kept on failure).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/tests/tasks"
WORK="$ROOT/target/tasks"
VENV="$ROOT/target/interop/venv"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# The gateway as tests/tasks/run.sh configures it (the fixture tools always become tasks).
TASK_TOOLS="slow_compute=0s,failing_job=0s,protocol_error_job=0s,confirm_delete=0s,multi_input=0s"
GATEWAY_ARGS=(--tasks true --task-tool "$TASK_TOOLS")

# shellcheck source=../interop/lib.sh
source "$ROOT/tests/interop/lib.sh"
KEEP_LOGS="${TASKS_KEEP:-}"
begin_run tasks-faults "$WORK"

section "tasks faults: tools and build"
ensure_python_sdk "$VENV"
PY="$VENV/bin/python"
if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing redis-server from the distribution's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
cargo build --release --all-features --bin mcp-resume --example tasks_client
MCP_RESUME="$TARGET_DIR/release/mcp-resume"
TASKS_CLIENT="$TARGET_DIR/release/examples/tasks_client"

start upstream "$PY" "$HERE/server.py" --port 0
line=$(wait_line "$RUN/upstream.out" '^server.py listening on http://' 60 "$STARTED_PID")
UPSTREAM=${line#server.py listening on }

FAILED=()
# fail TEXT: one failure, reported at the end.
fail() {
    FAILED+=("$1")
    log "FAILED: $1"
}
# tc NAME URL ARGS...: one tasks_client run (limited to 30 s); its JSON line in $RUN/NAME.out.
tc() {
    local name=$1 url=$2 rc=0
    shift 2
    run_client "$name" 40 "$TASKS_CLIENT" --deadline-secs 30 --url "$url" "$@" || rc=$?
    log "$name: exit $rc: $(head -c 400 "$RUN/$name.out")" >&2
    [[ $rc -eq 0 ]] || tail -n 3 "$RUN/$name.err" >&2
    return "$rc"
}
# field NAME EXPR: a Python expression over the run's JSON line `j`, printed.
field() {
    "$PY" -c 'import json, sys; j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(eval(sys.argv[2]))' \
        "$RUN/$1.out" "$2"
}
# create NAME URL TOOL ARGS: a task, returned at once (--no-poll); prints its id.
create() {
    tc "$1" "$2" --mode call --tool "$3" --args "$4" --expect task --no-poll true >/dev/null && field "$1" 'j["task"]'
}
# wait_status NAME URL TASK STATUS SECONDS: tasks/get until the task has STATUS (or is terminal).
wait_status() {
    local name=$1 url=$2 task=$3 want=$4 limit=$5 i status
    for ((i = 0; i < limit * 4; i++)); do
        tc "$name" "$url" --mode get --task-id "$task" >/dev/null 2>&1 || true
        status=$(field "$name" 'j.get("status", "")' 2>/dev/null || true)
        [[ $status == "$want" || $status == completed || $status == failed || $status == cancelled ]] && break
        sleep 0.25
    done
    echo "$status"
}

# ---------------------------------------------------------------------------------------------
section "tasks faults: SIGKILL of mcp-resume proxy --tasks, restart on the same SQLite file"
DB="$RUN/restart.db"
start_mcp_resume gateway --listen 127.0.0.1:0 --store "sqlite:$DB" "${GATEWAY_ARGS[@]}"
ADDR=$MR_ADDR
GW="http://$ADDR/mcp"
done_task=$(create done "$GW" slow_compute '{"seconds":1,"label":"before the kill"}') || fail "no task for the completed call"
working_a=$(create working-a "$GW" slow_compute '{"seconds":30,"label":"working a"}') || fail "no task for working a"
working_b=$(create working-b "$GW" slow_compute '{"seconds":30,"label":"working b"}') || fail "no task for working b"
status=$(wait_status done-before "$GW" "${done_task:-none}" completed 15)
[[ $status == completed ]] || fail "the short task is '$status' before the kill, not completed"
result_before=$(field done-before 'json.dumps(j.get("result"), sort_keys=True)' 2>/dev/null || true)
for task in working-a working-b; do
    tc "$task-before" "$GW" --mode get --task-id "$(field "$task" 'j["task"]')" >/dev/null || true
    [[ "$(field "$task-before" 'j.get("status")' 2>/dev/null)" == working ]] || fail "$task is not working before the kill"
done
kill -KILL "$MR_PID"
wait "$MR_PID" 2>/dev/null || true
log "proxy SIGKILLed; starting it again on $DB at $ADDR"
start_mcp_resume_again gateway-again "$ADDR" --store "sqlite:$DB" "${GATEWAY_ARGS[@]}" || fail "the proxy did not start again"

tc done-after "$GW" --mode get --task-id "${done_task:-none}" >/dev/null || true
[[ "$(field done-after 'j.get("status")' 2>/dev/null)" == completed ]] || fail "the completed task does not answer completed after the restart"
result_after=$(field done-after 'json.dumps(j.get("result"), sort_keys=True)' 2>/dev/null || true)
[[ -n $result_before && $result_before != null && $result_before == "$result_after" ]] ||
    fail "the completed task's result after the restart ($result_after) is not the one before ($result_before)"
for task in working-a working-b; do
    id=$(field "$task" 'j["task"]' 2>/dev/null || echo none)
    status=$(wait_status "$task-after" "$GW" "$id" failed 10)
    if [[ $status != failed ]]; then
        fail "$task is '$status' after the restart, not failed"
    else
        message=$(field "$task-after" '(j.get("error") or {}).get("message", "")')
        code=$(field "$task-after" '(j.get("error") or {}).get("code", "")')
        log "$task after the restart: failed, error $code: $message"
        [[ -n $message && -n $code ]] || fail "$task is failed without an error code and message"
    fi
done
kill -TERM "$MR_PID" 2>/dev/null || true

# ---------------------------------------------------------------------------------------------
section "tasks faults: two instances on one Redis: created on one, polled, updated and cancelled on the other"
REDIS_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no
for ((i = 0; i < 100; i++)); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
start_mcp_resume gateway-a --listen 127.0.0.1:0 --store "redis://127.0.0.1:$REDIS_PORT/0" "${GATEWAY_ARGS[@]}"
A="http://$MR_ADDR/mcp"
start_mcp_resume gateway-b --listen 127.0.0.1:0 --store "redis://127.0.0.1:$REDIS_PORT/0" "${GATEWAY_ARGS[@]}"
B="http://$MR_ADDR/mcp"
log "instance A $A, instance B $B, redis 127.0.0.1:$REDIS_PORT"

asking=$(create asking-on-a "$A" confirm_delete '{"filename":"fleet.txt"}') || fail "no task for confirm_delete on A"
status=$(wait_status asking-on-b "$B" "${asking:-none}" input_required 15)
if [[ $status != input_required ]]; then
    fail "the task created on A is '$status' on B, not input_required"
else
    keys=$(field asking-on-b '",".join(j.get("inputRequests", []))')
    log "on B: input_required, keys $keys"
    responses=$("$PY" -c 'import json, sys; print(json.dumps({k: {"action": "accept", "content": {"confirm": True}} for k in sys.argv[1].split(",") if k}))' "$keys")
    tc update-on-b "$B" --mode update --task-id "$asking" --responses "$responses" >/dev/null || fail "tasks/update on B failed"
    status=$(wait_status asking-done-on-b "$B" "$asking" completed 20)
    [[ $status == completed ]] || fail "after tasks/update on B the task is '$status' on B, not completed"
    tc asking-done-on-a "$A" --mode get --task-id "$asking" >/dev/null || true
    [[ "$(field asking-done-on-a 'j.get("status")' 2>/dev/null)" == completed ]] || fail "the updated task is not completed on A"
    text=$(field asking-done-on-a '(j.get("result") or {}).get("content", [{}])[0].get("text", "")' 2>/dev/null || true)
    log "result on A: $text"
    [[ $text == deleted* ]] || fail "the updated task's result does not carry the answer given on B: '$text'"
fi

long=$(create long-on-a "$A" slow_compute '{"seconds":30,"label":"cancelled on b"}') || fail "no task for slow_compute on A"
tc cancel-on-b "$B" --mode cancel --task-id "${long:-none}" >/dev/null || fail "tasks/cancel on B failed"
status=$(wait_status cancelled-on-a "$A" "${long:-none}" cancelled 15)
[[ $status == cancelled ]] || fail "the task cancelled on B is '$status' on A, not cancelled"
tc cancel-again-on-a "$A" --mode cancel --task-id "${long:-none}" >/dev/null || fail "a second tasks/cancel (terminal task) on A failed"
# The upstream's work stops too (at 2026-07-28 the gateway cancels by closing the call's stream).
wait_line "$RUN/upstream.out" "^slow_compute 'cancelled on b': cancelled" 10 >/dev/null ||
    fail "the upstream call of the task cancelled on B was not cancelled within 10 s"

# ---------------------------------------------------------------------------------------------
section "tasks faults: $((SECONDS - T0)) s"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    printf 'tasks faults: FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
echo "tasks faults: after SIGKILL and restart on SQLite the completed task answers its result and the working ones are failed with an error; on Redis a task is polled, updated and cancelled on the other instance"
