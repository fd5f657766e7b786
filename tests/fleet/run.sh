#!/usr/bin/env bash
# A fleet behind a real load balancer (issue 25, part 3): three `mcp-resume proxy` instances on
# one Redis, HAProxy in front of them (round-robin, no affinity), the fault proxy cutting client
# connections in front of HAProxy. See docs/fleet.md.
#
#   bash tests/fleet/run.sh      # installs HAProxy and redis-server (apt-get) when missing
#
# client ──> fault_proxy ──> HAProxy ──┬─> mcp-resume proxy a ──┐
#            random cuts   round-robin ├─> mcp-resume proxy b ──┼─> server.py (Python SDK, no store)
#                          no affinity └─> mcp-resume proxy c ──┘
#                                               └── one redis-server ──┘
#
# The instances run with a 2 s detach timeout and a 250 ms lease period; every call lasts 8 s
# (four detach timeouts), and its cut streams are resumed wherever HAProxy sends the GET.
#   1. cuts: the reference client, the official Python SDK client and the official TypeScript SDK
#      client, each through its own fault proxy, FLEET_CALLS calls each (default 10, all at
#      once). Every call must complete with every notification (tests/interop/check.py; the
#      reference client itself fails on a duplicate or a reordering), every resume answered 200.
#   2. kill: the same three clients again; 3 s in, one instance is SIGKILLed. Every call whose
#      stream that instance produced must fail: the fleet must refuse its resumes (400) within
#      FLEET_FAIL_SECONDS (default 15) of the kill, and the client must fail the call within
#      that too (the TypeScript SDK: within that plus its request timeout, see below); every
#      other call must complete, exactly (tests/fleet/check.py).
#   3. SQLite on an instance: it says at start-up that it serves one instance alone.
# Prints counts: calls, cuts, resumes, resumes served by another instance than the producer.
#
# HAProxy's only retries are on connection failures (`retry-on conn-failure`, its default, with
# `option redispatch`): a request is re-sent only when no byte of it reached an instance, so a
# POST is never replayed. Reuses the interop run's pinned venv and SDKs (target/interop/) and the
# release build. Env: FLEET_SEED, FLEET_CALLS, FLEET_FAIL_SECONDS, FLEET_KEEP=1 (keep logs).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/tests/fleet"
INTEROP="$ROOT/tests/interop"
# shellcheck source=../interop/lib.sh
source "$INTEROP/lib.sh"
SEED="${FLEET_SEED:-20261207}"
CALLS="${FLEET_CALLS:-10}"
FAIL_SECONDS="${FLEET_FAIL_SECONDS:-15}"
TS_TIMEOUT=10
KEEP_LOGS="${FLEET_KEEP:-}"
DETACH=2s
LEASE=250ms
TOOL_ARGS='{"seconds": 8, "count": 80}'
EXPECT=80
begin_run fleet "$ROOT/target/fleet"

section "fleet: tools and build"
missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]} from the distribution's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
log "$(haproxy -v | head -n 1); $(redis-server --version | cut -d' ' -f1-3)"
ensure_python_sdk "$ROOT/target/interop/venv"
PY="$ROOT/target/interop/venv/bin/python"
ensure_typescript_sdk "$ROOT/target/interop/node"
build_release_binaries
private_binaries

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

problems=()
problem() { problems+=("$1"); log "problem: $1"; }

section "fleet: Redis, the upstream, three instances, HAProxy"
REDIS_PORT=$(free_port)
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no
wait_line "$RUN/redis.out" 'Ready to accept connections' 30 "$STARTED_PID" >/dev/null
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
start_upstream upstream
declare -A INSTANCE_PID INSTANCE_ADDR
for name in a b c; do
    start_mcp_resume "instance-$name" --listen 127.0.0.1:0 --store "$REDIS_URL" \
        --detach-timeout "$DETACH" --lease-period "$LEASE" --retry 250ms
    INSTANCE_PID[$name]=$MR_PID
    INSTANCE_ADDR[$name]=$MR_ADDR
done
HAPROXY_PORT=$(free_port)
cat >"$RUN/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 120s
    timeout server 120s
    # Connection failures only (retry-on's default): nothing of the request reached the
    # instance, so re-sending it elsewhere cannot run a call twice.
    retries 3
    option redispatch
frontend fleet
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend instances
backend instances
    balance roundrobin
    server a ${INSTANCE_ADDR[a]} check inter 500ms fall 1 rise 2
    server b ${INSTANCE_ADDR[b]} check inter 500ms fall 1 rise 2
    server c ${INSTANCE_ADDR[c]} check inter 500ms fall 1 rise 2
EOF
haproxy -c -f "$RUN/haproxy.cfg" >/dev/null
start haproxy haproxy -db -f "$RUN/haproxy.cfg"
HAPROXY_PID=$STARTED_PID
for ((i = 0; i < 50; i++)); do
    "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $HAPROXY_PORT), 1)" 2>/dev/null && break
    sleep 0.1
done
log "redis $REDIS_URL; instances a=${INSTANCE_ADDR[a]} b=${INSTANCE_ADDR[b]} c=${INSTANCE_ADDR[c]}; haproxy 127.0.0.1:$HAPROXY_PORT; upstream $UPSTREAM"

# clients PHASE SEED: the three clients at once, each through its own fault proxy in front of
# HAProxy; sets CLIENT_PIDS (reference python typescript). The SDK clients tolerate 1000
# consecutive failed resumes under cuts (as in tests/interop) and 10 in the kill phase, so a call
# whose stream ended with its producer fails instead of retrying its refused resume for minutes.
# The TypeScript SDK does not fail a call whose resumes it gave up on: the call waits for its
# request timeout (reset by each progress notification), TS_TIMEOUT s in the kill phase.
clients() {
    local phase=$1 seed=$2 client RETRIES=1000 TS_TIMEOUT_MS=60000
    [[ $phase == kill ]] && RETRIES=10 TS_TIMEOUT_MS=$((TS_TIMEOUT * 1000))
    CLIENT_PIDS=()
    for client in reference python typescript; do
        local name="$phase-$client"
        date +%s.%N >"$RUN/$name-proxy.started"
        start_fault_proxy "$name-proxy" "127.0.0.1:$HAPROXY_PORT" "$seed"
        local url="http://$FP_ADDR/mcp"
        seed=$((seed + 1))
        date +%s.%N >"$RUN/$name.started"
        case $client in
            reference)
                if [[ $phase == cuts ]]; then
                    start "$name" timeout 120 "$REFERENCE_CLIENT" --url "$url" --calls "$CALLS" \
                        --concurrency "$CALLS" --tool long_task --args "$TOOL_ARGS" --expect "$EXPECT" \
                        --report "$RUN/$name.json"
                else
                    start "$name" timeout 120 "$REFERENCE_CLIENT" --mode chaos --url "$url" --calls "$CALLS" \
                        --concurrency "$CALLS" --tool long_task --args "$TOOL_ARGS" --expect "$EXPECT" \
                        --deadline-secs 60 --idle-timeout-secs 20 --report "$RUN/$name.json"
                fi
                ;;
            python)
                start "$name" timeout 120 "$PY" "$INTEROP/client.py" --mode faults --url "$url" \
                    --calls "$CALLS" --concurrency "$CALLS" --tool long_task --args "$TOOL_ARGS" \
                    --timeout 60 --max-reconnection-attempts "$RETRIES" --results "$RUN/$name.json"
                ;;
            typescript)
                start "$name" timeout 120 node "$INTEROP/client.mjs" --mode faults --url "$url" \
                    --calls "$CALLS" --concurrency "$CALLS" --tool long_task --args "$TOOL_ARGS" \
                    --timeout-ms "$TS_TIMEOUT_MS" --max-retries "$RETRIES" --results "$RUN/$name.json"
                ;;
        esac
        CLIENT_PIDS+=("$STARTED_PID")
    done
}

# wait_clients PHASE: waits for the three clients; records each one's exit status.
declare -A CLIENT_RC
wait_clients() {
    local phase=$1 i=0 client rc
    for client in reference python typescript; do
        rc=0
        wait "${CLIENT_PIDS[i]}" || rc=$?
        CLIENT_RC[$phase-$client]=$rc
        i=$((i + 1))
    done
}

section "fleet: 1. cuts: $CALLS calls per client, each $EXPECT notifications over 8 s, resumed anywhere"
clients cuts "$SEED"
wait_clients cuts
for client in reference python typescript; do
    name="cuts-$client"
    rc=${CLIENT_RC[$name]}
    if [[ $client == reference ]]; then
        summary=$(grep -E '^reference_client' "$RUN/$name.out" || echo "no summary")
        summary="$summary; $("$PY" "$INTEROP/check.py" --name "$name-proxy" --mode proxy \
            --proxy-log "$RUN/$name-proxy.jsonl")" || rc=1
    else
        dups=explained
        [[ $client == typescript ]] && dups=zero
        summary=$("$PY" "$INTEROP/check.py" --name "$name" --mode faults --results "$RUN/$name.json" \
            --proxy-log "$RUN/$name-proxy.jsonl" --calls "$CALLS" --expect "$EXPECT" --duplicates "$dups") ||
            rc=1
    fi
    echo "$summary"
    [[ $rc -eq 0 ]] || problem "cuts: $client: exit $rc ($(tail -n 2 "$RUN/$name.err" | tr '\n' ' '))"
done

section "fleet: 2. kill: the same, and instance a is SIGKILLed 3 s in"
clients kill "$((SEED + 10))"
sleep 3
kill_now "${INSTANCE_PID[a]}"
KILLED_AT=$(date +%s.%N)
log "instance a: SIGKILL"
wait_clients kill
if ! "$PY" "$HERE/check.py" --run "$RUN" --killed-log "$RUN/instance-a.err" --killed-at "$KILLED_AT" \
    --expect "$EXPECT" --calls "$CALLS" --fail-seconds "$FAIL_SECONDS" --typescript-timeout "$TS_TIMEOUT"; then
    problem "kill: see the lines above"
fi

section "fleet: 3. SQLite on an instance of a fleet"
start_mcp_resume sqlite-instance --listen 127.0.0.1:0 --store "sqlite:$RUN/alone.db"
if wait_line "$RUN/sqlite-instance.err" 'serves this instance alone' 10 "$MR_PID" >/dev/null; then
    echo "sqlite: the instance says at start-up that its store serves it alone"
else
    problem "sqlite: no start-up note that the store serves one instance"
fi
kill "$MR_PID" 2>/dev/null || true

section "fleet: counts"
"$PY" "$HERE/check.py" --run "$RUN" --counts-only
if grep -l 'panicked' "$RUN"/*.err >/dev/null 2>&1; then
    problem "a panic: $(grep -h 'panicked' "$RUN"/*.err | head -n 1)"
fi
if [[ ${#problems[@]} -gt 0 ]]; then
    printf 'fleet: FAIL %s\n' "${problems[@]}"
    exit 1
fi
echo "fleet: OK ($((SECONDS - T0))s)"
