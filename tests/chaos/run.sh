#!/usr/bin/env bash
# A bounded fault run: many sessions through `mcp-resume proxy` while everything that can go
# wrong does, once each, checking that every call either completes exactly or fails promptly
# with a clear error, and that none hangs (issue 26, part 6). See tests/interop/README.md.
#
#   bash tests/chaos/run.sh      # needs root: the store sits on a small tmpfs that it mounts
#
# reference_client --mode chaos ──> fault_proxy ──> mcp-resume proxy ──> server.py (Python SDK)
#                                   random cuts     SQLite on a tmpfs
#
# Two passes, one per store failure policy (`--on-store-failure open`, then `closed`). In each,
# CHAOS_SESSIONS sessions (default 40), 10 at a time, each with one `long_task` call (120
# progress notifications over 6 s), go through the fault proxy, which cuts their event streams
# at random. While they run:
#   - at 2 s the upstream Python server is SIGKILLed and started again on its port,
#   - from 7 s to 12 s the tmpfs under the SQLite store is full (a ballast file),
#   - at 15 s mcp-resume is SIGKILLed and started again on its address and SQLite file.
# The client gives each session CHAOS_DEADLINE seconds (default 60) and sorts the calls into
# completed exact, failed clearly (by reason), hung and inexact; the run fails on any hung,
# inexact or unclear call, on a pass where no call completed, on a panic, and on a pass where a
# fault did not happen (no cut, no resume, the full disk unseen by the store, the calls over
# before a fault). About a minute after the build.
#
# Reuses the interop run's pinned Python SDK venv and release build (target/interop/,
# target/release). Env: CHAOS_SEED (fault proxy seed), CHAOS_SESSIONS, CHAOS_DEADLINE,
# CHAOS_KEEP=1 (keep logs; they are kept on failure).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=../interop/lib.sh
source "$ROOT/tests/interop/lib.sh"
SEED="${CHAOS_SEED:-20261207}"
SESSIONS="${CHAOS_SESSIONS:-40}"
DEADLINE="${CHAOS_DEADLINE:-60}"
KEEP_LOGS="${CHAOS_KEEP:-}"
begin_run chaos "$ROOT/target/chaos"

section "chaos: tools and build"
if [[ $(id -u) -ne 0 ]]; then
    echo "chaos: needs root, to mount the tmpfs that the store fills up" >&2
    exit 1
fi
ensure_python_sdk "$ROOT/target/interop/venv"
PY="$ROOT/target/interop/venv/bin/python"
build_release_binaries
private_binaries

problems=()
# problem POLICY TEXT: one reason the run fails.
problem() { problems+=("[$1] $2"); log "[$1] problem: $2"; }

# pass POLICY SEED: one run of $SESSIONS sessions with `--on-store-failure POLICY`, every
# fault injected once while they run; adds to `problems`.
pass() {
    local policy=$1 seed=$2
    local disk="$RUN/disk-$policy"
    mkdir -p "$disk"
    mount -t tmpfs -o size=16m tmpfs "$disk"
    on_cleanup umount "$disk"
    # --max-wal-bytes at its minimum keeps the write-ahead log inside the small tmpfs.
    local mr_args=(--store "sqlite:$disk/events.db" --retry 500ms --detach-timeout 10s
        --max-wal-bytes 1048576 --on-store-failure "$policy")

    start_upstream "$policy-upstream-1" || { problem "$policy" "the upstream did not start"; return; }
    local upstream_port=${UPSTREAM##*:}
    upstream_port=${upstream_port%%/*}
    start_mcp_resume "$policy-mcp-resume-1" --listen 127.0.0.1:0 "${mr_args[@]}" ||
        { problem "$policy" "mcp-resume did not start"; return; }
    local listen=$MR_ADDR
    start_fault_proxy "$policy-fault-proxy" "$listen" "$seed" ||
        { problem "$policy" "the fault proxy did not start"; return; }
    local fault_proxy_pid=$STARTED_PID
    log "[$policy] client -> fault proxy $FP_ADDR -> mcp-resume $listen (SQLite on a 16 MiB tmpfs) -> $UPSTREAM"

    start "$policy-client" timeout $((DEADLINE * (SESSIONS / 10 + 2))) "$REFERENCE_CLIENT" --mode chaos \
        --url "http://$FP_ADDR/mcp" --calls "$SESSIONS" --concurrency 10 --tool long_task \
        --args '{"seconds": 6, "count": 120}' --expect 120 --deadline-secs "$DEADLINE" \
        --idle-timeout-secs 20 --report "$RUN/$policy-client.json"
    local client_pid=$STARTED_PID client_t0=$SECONDS
    # at SECONDS: sleeps until SECONDS after the client started, and checks that it still runs
    # (a fault injected after the last call proves nothing).
    at() {
        sleep "$(($1 - (SECONDS - client_t0)))" 2>/dev/null || true
        kill -0 "$client_pid" 2>/dev/null || problem "$policy" "the calls were over before the fault at ${1}s"
    }

    at 2
    log "[$policy] upstream: SIGKILL, then started again on port $upstream_port"
    kill_now "$UPSTREAM_PID"
    local attempt restarted=0
    for attempt in 2 3 4 5 6; do
        if start_upstream "$policy-upstream-$attempt" "$upstream_port"; then
            restarted=1
            break
        fi
        sleep 0.5
    done
    [[ $restarted -eq 1 ]] || problem "$policy" "the upstream did not start again on port $upstream_port"
    log "[$policy] upstream: back"

    at 7
    dd if=/dev/zero of="$disk/ballast" bs=64k 2>/dev/null || true
    log "[$policy] disk: full ($(df -h --output=avail "$disk" | tail -n 1 | tr -d ' ') left); held for 5 s"
    at 12
    rm -f "$disk/ballast"
    log "[$policy] disk: freed"

    at 15
    log "[$policy] mcp-resume: SIGKILL, then started again on $listen with the same SQLite file"
    kill_now "$MR_PID"
    start_mcp_resume_again "$policy-mcp-resume-2" "$listen" "${mr_args[@]}" ||
        problem "$policy" "mcp-resume did not start again on $listen"
    log "[$policy] mcp-resume: back"

    local rc=0
    wait "$client_pid" || rc=$?
    grep -E '^reference_client' "$RUN/$policy-client.out" || echo "reference_client: no summary (exit $rc)"
    grep -E '^reference_client: ' "$RUN/$policy-client.err" | sed 's/^/  /' || true
    [[ $rc -eq 0 ]] || problem "$policy" "hung, inexact or unclear calls, or none completed (client exit $rc)"
    local cuts resumes full
    cuts=$(grep -c '"outcome":"cut"' "$RUN/$policy-fault-proxy.jsonl" || true)
    resumes=$(grep -c '"last_event_id":"' "$RUN/$policy-fault-proxy.jsonl" || true)
    full=$(cat "$RUN/$policy"-mcp-resume-*.err | grep -c 'no space left' || true)
    echo "faults: cuts=$cuts resumes=$resumes store_errors_for_the_full_disk=$full upstream_restarts=1 proxy_restarts=1"
    [[ $cuts -gt 0 ]] || problem "$policy" "the fault proxy cut nothing"
    [[ $resumes -gt 0 ]] || problem "$policy" "no resume reached mcp-resume"
    [[ $full -gt 0 ]] || problem "$policy" "the store never saw the full disk"
    if grep -l 'panicked' "$RUN/$policy"-*.err >/dev/null 2>&1; then
        problem "$policy" "a panic: $(grep -h 'panicked' "$RUN/$policy"-*.err | head -n 1)"
    fi
    # The next pass starts from nothing.
    local pid
    for pid in "$client_pid" "$fault_proxy_pid" "$MR_PID" "$UPSTREAM_PID"; do kill "$pid" 2>/dev/null || true; done
}

T_PASSES=$SECONDS
section "chaos: --on-store-failure open: $SESSIONS sessions through random cuts, an upstream restart, a full disk, a proxy restart"
pass open "$SEED"
section "chaos: --on-store-failure closed: the same"
pass closed "$((SEED + 1))"

section "chaos: summary (seed $SEED, $((SECONDS - T_PASSES))s)"
if [[ ${#problems[@]} -gt 0 ]]; then
    printf 'chaos: FAIL %s\n' "${problems[@]}"
    exit 1
fi
echo "chaos: OK"
