#!/usr/bin/env bash
# Interop proof: `mcp-resume proxy` in front of an official Python SDK server, used by the
# official Python and TypeScript SDK clients and by the project's reference client, through a
# fault-injecting proxy that cuts their event streams. See tests/interop/README.md.
#
#   bash tests/interop/run.sh            # everything: install, build, run, summary
#
# Installs what it needs itself, pinned, under target/interop/ (reused when present):
#   - a Python virtual environment with mcp==2.3.0 (PyPI)
#   - @modelcontextprotocol/sdk 1.32.x (npm), run with the machine's Node 20
# Builds the binary and two examples in release mode with --all-features, as
# `cargo bench --no-run --all-features` in .ci/run does: one release build serves both.
# Every process listens on 127.0.0.1 (free ports); all are stopped on exit, whatever happens.
# Exits non-zero on any failure. Env: INTEROP_SEED (fault proxy seeds), INTEROP_KEEP=1 (keep logs).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/tests/interop"
WORK="$ROOT/target/interop"
VENV="$WORK/venv"
NODE_DIR="$WORK/node"
SEED="${INTEROP_SEED:-20261124}"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
KEEP_LOGS="${INTEROP_KEEP:-}"
begin_run interop "$WORK"

# ---------------------------------------------------------------------------------------------
section "interop: tools (pinned, under target/interop)"

ensure_python_sdk "$VENV"
log "python sdk: mcp $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))') ($("$VENV/bin/python" --version))"

ensure_typescript_sdk "$NODE_DIR"
PY="$VENV/bin/python"

# ---------------------------------------------------------------------------------------------
section "interop: build"
build_release_binaries

# ---------------------------------------------------------------------------------------------
section "interop: upstream (Python SDK server, no event store)"
start_upstream upstream
log "upstream: $UPSTREAM"

BURST_ARGS='{"count": 200, "interval_ms": 10}'
LONG_ARGS='{"seconds": 20, "count": 200}'

# ---------------------------------------------------------------------------------------------
# The tests. Each runs in its own subshell and writes one result line.

# poll CLIENT [quiet]: one call through `mcp-resume proxy --poll-after 2s` (behind a recording,
# non-cutting fault proxy), nothing lost. Default: the 20 s long_task, 200 notifications.
# quiet: 3 notifications 3 s apart, so some polled responses carry no event at all.
test_poll() {
    local client=$1 variant=${2:-} name="poll-$1" args=$LONG_ARGS expect=200 min_resumes=5
    if [[ $variant == quiet ]]; then
        name="poll-quiet-$1" args='{"seconds": 9, "count": 3}' expect=3 min_resumes=2
    fi
    start_mcp_resume "$name-mcp-resume" --listen 127.0.0.1:0 --store "sqlite:$RUN/$name.db" \
        --poll-after 2s --retry 250ms || { record "$name" FAIL "mcp-resume did not start"; return; }
    start_fault_proxy "$name-proxy" "$MR_ADDR" 1 --cut-probability 0 ||
        { record "$name" FAIL "recording proxy did not start"; return; }
    local url="http://$FP_ADDR/mcp" rc=0
    if [[ $client == python ]]; then
        run_client "$name" 120 "$PY" "$HERE/client.py" --mode poll --url "$url" --tool long_task \
            --args "$args" --timeout 25 --results "$RUN/$name.json" || rc=$?
    else
        run_client "$name" 120 node "$HERE/client.mjs" --mode poll --url "$url" --tool long_task \
            --args "$args" --timeout-ms 25000 --results "$RUN/$name.json" || rc=$?
    fi
    if [[ $rc -ne 0 ]]; then
        record "$name" FAIL "client exited $rc: $(tail -n 3 "$RUN/$name.err" | tr '\n' ' ')"
        return
    fi
    # poll-quiet-typescript guards the layer's priming of resumed responses: without it,
    # @modelcontextprotocol/sdk 1.32.x loses the call (tests/interop/README.md).
    local summary pass=PASS fail=FAIL
    if summary=$("$PY" "$HERE/check.py" --name "$name" --mode poll --results "$RUN/$name.json" \
        --proxy-log "$RUN/$name-proxy.jsonl" --expect "$expect" --min-resumes "$min_resumes"); then
        record "$name" "$pass" "$summary"
    else
        record "$name" "$fail" "$summary"
    fi
}

# restart CLIENT: SIGKILL mcp-resume mid-call while the client is away, start it again on the same
# SQLite file; the client's resume with its last id must bring every event committed after it,
# then a 400 (the stream was abandoned with the dead process), so the call fails promptly.
# reference: the client drops its connection after 30 notifications and stays away 2 s while the
#   tool runs on and mcp-resume commits its events; then mcp-resume is killed and restarted
#   (the client resumes once $signal.restarted exists).
# python: the SDK client goes through a fault proxy that cuts its call's response once (after
#   ~25 notifications); mcp-resume's retry hint is 2 s, so the SDK waits 2 s before resuming;
#   1 s after the cut mcp-resume is killed and restarted. MAX_RECONNECTION_ATTEMPTS stays at the
#   SDK's default, 2.
test_restart() {
    local client=$1 name="restart-$1"
    local db="$RUN/$name.db" signal="$RUN/$name.signal" retry=500ms
    [[ $client == python ]] && retry=2s
    start_mcp_resume "$name-mcp-resume-1" --listen 127.0.0.1:0 --store "sqlite:$db" --retry "$retry" ||
        { record "$name" FAIL "mcp-resume did not start"; return; }
    local first_pid=$MR_PID addr=$MR_ADDR client_pid
    if [[ $client == reference ]]; then
        start "$name" timeout 120 "$REFERENCE_CLIENT" --mode restart --url "http://$addr/mcp" --tool long_task \
            --args "$LONG_ARGS" --signal-file "$signal" --signal-after 30 --detach-ms 2000 \
            --idle-timeout-secs 15 --report "$RUN/$name.json"
        client_pid=$STARTED_PID
        local i=0
        while [[ ! -e "$signal" && $i -lt 600 ]] && kill -0 "$client_pid" 2>/dev/null; do
            sleep 0.05
            i=$((i + 1))
        done
    else
        start_fault_proxy "$name-proxy" "$addr" 1 --min-bytes 6000 --max-bytes 6000 --cut-probability 1 \
            --max-cuts 1 || { record "$name" FAIL "fault proxy did not start"; return; }
        start "$name" timeout 120 "$PY" "$HERE/client.py" --mode restart --url "http://$FP_ADDR/mcp" \
            --tool long_task --args "$LONG_ARGS" --max-reconnection-attempts 2 --timeout 60 \
            --results "$RUN/$name.json"
        client_pid=$STARTED_PID
        if wait_line "$RUN/$name-proxy.jsonl" '"outcome":"cut"' 30 "$client_pid" >/dev/null; then
            sleep 1
            touch "$signal"
        fi
    fi
    if [[ ! -e "$signal" ]]; then
        record "$name" FAIL "the client never reached the kill point: $(tail -n 3 "$RUN/$name.err" | tr '\n' ' ')"
        return
    fi
    kill -9 "$first_pid" 2>/dev/null || true
    wait "$first_pid" 2>/dev/null || true
    log "$name: mcp-resume SIGKILLed mid-call; starting it again on $addr with the same store"
    if ! start_mcp_resume_again "$name-mcp-resume-2" "$addr" --store "sqlite:$db" --retry "$retry"; then
        record "$name" FAIL "mcp-resume did not start again on $addr: $(tail -n 3 "$RUN/$name-mcp-resume-2.err" | tr '\n' ' ')"
        return
    fi
    date +%s.%N >"$RUN/$name.restarted-at"
    touch "$signal.restarted" # the reference client resumes only now
    local rc=0
    wait "$client_pid" || rc=$?
    if [[ $client == reference ]]; then
        local summary
        summary=$(grep -E '^reference_client' "$RUN/$name.out" || echo "no summary; exit $rc")
        if [[ $rc -eq 0 ]]; then record "$name" PASS "$summary"; else record "$name" FAIL "$summary"; fi
        return
    fi
    if [[ $rc -ne 0 ]]; then
        record "$name" FAIL "client exited $rc: $(tail -n 3 "$RUN/$name.err" | tr '\n' ' ')"
        return
    fi
    local summary
    if summary=$("$PY" "$HERE/check.py" --name "$name" --mode restart --results "$RUN/$name.json" \
        --proxy-log "$RUN/$name-proxy.jsonl" --restarted-at "$RUN/$name.restarted-at" --max-fail-seconds 15); then
        record "$name" PASS "$summary"
    else
        record "$name" FAIL "$summary"
    fi
}

# faults CLIENT SEED: 50 calls of 200 notifications each through the fault proxy.
test_faults() {
    local client=$1 seed=$2 name="faults-$1"
    start_fault_proxy "$name-proxy" "$FAULTS_MR_ADDR" "$seed" ||
        { record "$name" FAIL "fault proxy did not start"; return; }
    local url="http://$FP_ADDR/mcp" rc=0
    case $client in
        reference)
            run_client "$name" 300 "$REFERENCE_CLIENT" --url "$url" --calls 50 --concurrency 10 --tool burst \
                --args "$BURST_ARGS" --expect 200 --report "$RUN/$name.json" || rc=$?
            local summary proxy_rc=0
            summary=$(grep -E '^reference_client' "$RUN/$name.out" || echo "no summary; exit $rc")
            # The proxy's view of the same run: cuts, resumes, and the server's replay invariants.
            summary="$summary"$'\n'"$("$PY" "$HERE/check.py" --name "$name-proxy" --mode proxy \
                --proxy-log "$RUN/$name-proxy.jsonl")" || proxy_rc=$?
            if [[ $rc -eq 0 && $proxy_rc -eq 0 ]]; then record "$name" PASS "$summary"; else record "$name" FAIL "$summary"; fi
            return
            ;;
        python)
            run_client "$name" 300 "$PY" "$HERE/client.py" --mode faults --url "$url" --calls 50 \
                --concurrency 10 --tool burst --args "$BURST_ARGS" --results "$RUN/$name.json" || rc=$?
            ;;
        typescript)
            run_client "$name" 300 node "$HERE/client.mjs" --mode faults --url "$url" --calls 50 \
                --concurrency 10 --tool burst --args "$BURST_ARGS" --results "$RUN/$name.json" || rc=$?
            ;;
    esac
    if [[ $rc -ne 0 ]]; then
        record "$name" FAIL "client exited $rc: $(tail -n 3 "$RUN/$name.err" | tr '\n' ' ')"
        return
    fi
    local dups=explained summary
    [[ $client == typescript ]] && dups=zero
    if summary=$("$PY" "$HERE/check.py" --name "$name" --mode faults --results "$RUN/$name.json" \
        --proxy-log "$RUN/$name-proxy.jsonl" --calls 50 --expect 200 --duplicates "$dups"); then
        record "$name" PASS "$summary"
    else
        record "$name" FAIL "$summary"
    fi
}

# ---------------------------------------------------------------------------------------------
section "interop: poll mode and restart (concurrently)"
TEST_PIDS=()
for client in python typescript; do
    test_poll "$client" &
    TEST_PIDS+=($!)
    test_poll "$client" quiet &
    TEST_PIDS+=($!)
done
for client in reference python; do
    test_restart "$client" &
    TEST_PIDS+=($!)
done
for pid in "${TEST_PIDS[@]}"; do remember "$pid"; done
wait "${TEST_PIDS[@]}" || true

section "interop: fault injection, 50 calls x 200 notifications per client"
start_mcp_resume faults-mcp-resume --listen 127.0.0.1:0 --store "sqlite:$RUN/faults.db" --retry 500ms
FAULTS_MR_ADDR=$MR_ADDR
log "mcp-resume for the fault runs: $FAULTS_MR_ADDR -> $UPSTREAM"
test_faults reference "$SEED"
test_faults python "$((SEED + 1))"
test_faults typescript "$((SEED + 2))"

# ---------------------------------------------------------------------------------------------
section "interop: summary (seed $SEED, $((SECONDS - T0))s)"
passed=0
failed=0
for test in poll-python poll-typescript poll-quiet-python poll-quiet-typescript restart-reference restart-python \
    faults-reference faults-python faults-typescript; do
    if [[ -f "$RUN/results/$test" ]]; then
        status=$(head -n 1 "$RUN/results/$test")
        text=$(tail -n +2 "$RUN/results/$test")
    else
        status=FAIL
        text="$test: did not report"
    fi
    printf '%-5s %-21s %s\n' "$status" "$test" "${text//$'\n'/$'\n'                            }"
    case $status in
        PASS) passed=$((passed + 1)) ;;
        *) failed=$((failed + 1)) ;;
    esac
done
echo
echo "interop: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
