# Sourced by tests/interop/run.sh and tests/chaos/run.sh: one run directory per run, the
# processes a run starts (recorded, and all stopped on exit whatever happens), and starting the
# programs every run uses: the Python SDK server, `mcp-resume proxy`, the fault proxy.
#
# The sourcing script sets ROOT (the repository) and calls begin_run first.

# shellcheck source=python-sdk.sh
source "$ROOT/tests/interop/python-sdk.sh"

TS_SDK_RANGE="~1.32.0"

# ensure_typescript_sdk NODE_DIR: installs @modelcontextprotocol/sdk $TS_SDK_RANGE (npm) under
# NODE_DIR when missing, checks Node 20 or later, and exports INTEROP_NODE_MODULES for client.mjs.
ensure_typescript_sdk() {
    local node_dir=$1 major
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [[ "$major" -lt 20 ]]; then
        echo "$RUN_NAME: Node 20 or later is needed, found $(node --version)" >&2
        return 1
    fi
    local package="$node_dir/node_modules/@modelcontextprotocol/sdk/package.json"
    if [[ "$(node -p "require('$package').version" 2>/dev/null || true)" != 1.32.* ]]; then
        mkdir -p "$node_dir"
        [[ -f "$node_dir/package.json" ]] || echo '{"name": "mcp-resume-interop", "private": true}' >"$node_dir/package.json"
        (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error "@modelcontextprotocol/sdk@$TS_SDK_RANGE" >/dev/null)
    fi
    log "typescript sdk: @modelcontextprotocol/sdk $(node -p "require('$package').version") (node $(node --version))"
    export INTEROP_NODE_MODULES="$node_dir/node_modules"
}

# begin_run NAME WORK: makes RUN, a fresh run directory under WORK (kept on failure, or always
# when KEEP_LOGS is set), starts the clock T0 and installs the exit trap. NAME prefixes messages.
begin_run() {
    RUN_NAME=$1
    mkdir -p "$2"
    RUN="$(mktemp -d "$2/run.XXXXXX")"
    mkdir -p "$RUN/results"
    : >"$RUN/pids"
    CLEANUP_HOOKS=()
    T0=$SECONDS
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# start_time PID: the process's start time (field 22 of /proc/PID/stat, the 20th after the
# parenthesised command name), empty once it is gone.
start_time() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $20 }' || true; }
# remember PID: records a process this script started, for cleanup.
remember() { echo "$1 $(start_time "$1")" >>"$RUN/pids"; }

section() { printf '\n== %s ==\n' "$*"; }
log() { printf '[%s %3ds] %s\n' "$RUN_NAME" "$((SECONDS - T0))" "$*"; }

# on_cleanup CMD...: runs CMD at exit, after every process is stopped, before the run directory
# is removed (in the reverse order of registration).
on_cleanup() { CLEANUP_HOOKS+=("$*"); }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Stop every process this script started (ids and start times in $RUN/pids), newest first;
    # a pid is signalled only while it still names the process we started (no reused pids).
    if [[ -s "$RUN/pids" ]]; then
        local signal pid started
        for signal in TERM KILL; do
            tac "$RUN/pids" | while read -r pid started; do
                [[ "$(start_time "$pid")" == "$started" ]] && kill "-$signal" "$pid" 2>/dev/null || true
            done
            [[ $signal == TERM ]] && sleep 0.5
        done
    fi
    wait 2>/dev/null || true
    local i
    for ((i = ${#CLEANUP_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUP_HOOKS[i]}" || true
    done
    if [[ $status -ne 0 || -n "${KEEP_LOGS:-}" ]]; then
        echo "$RUN_NAME: logs kept in $RUN"
    else
        rm -rf "$RUN"
    fi
    exit "$status"
}

# start NAME CMD...: runs CMD in the background, stdout to $RUN/NAME.out, stderr to $RUN/NAME.err.
# Sets STARTED_PID.
start() {
    local name=$1
    shift
    "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" &
    STARTED_PID=$!
    remember "$STARTED_PID"
}

# run_client NAME LIMIT CMD...: runs CMD to completion under `timeout LIMIT` (recorded for cleanup),
# stdout to $RUN/NAME.out, stderr to $RUN/NAME.err; returns its exit status.
run_client() {
    local name=$1 limit=$2 rc=0
    shift 2
    start "$name" timeout "$limit" "$@"
    wait "$STARTED_PID" || rc=$?
    return "$rc"
}

# wait_line FILE REGEX [SECONDS [PID]]: prints the first line of FILE matching REGEX, waiting for
# it (and giving up early if process PID has exited).
wait_line() {
    local file=$1 pattern=$2 limit=${3:-30} pid=${4:-} i
    for ((i = 0; i < limit * 10; i++)); do
        if [[ -f "$file" ]] && grep -m1 -E "$pattern" "$file"; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            grep -m1 -E "$pattern" "$file" 2>/dev/null && return 0
            echo "$RUN_NAME: process $pid exited before printing '$pattern' ($file)" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "$RUN_NAME: no line matching '$pattern' in $file after ${limit}s" >&2
    tail -n 20 "${file%.out}.err" >&2 2>/dev/null || true
    return 1
}

# build_release_binaries: builds the binary and the two interop examples in release mode with
# --all-features (as `cargo bench --no-run --all-features` in .ci/run does: one release build
# serves both); sets MCP_RESUME, FAULT_PROXY, REFERENCE_CLIENT.
build_release_binaries() {
    cargo build --release --all-features --bin mcp-resume --example fault_proxy --example reference_client
    local target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
    MCP_RESUME="$target_dir/release/mcp-resume"
    FAULT_PROXY="$target_dir/release/examples/fault_proxy"
    REFERENCE_CLIENT="$target_dir/release/examples/reference_client"
}

# private_binaries: copies the three binaries into $RUN/bin and points MCP_RESUME, FAULT_PROXY
# and REFERENCE_CLIENT there, so a build running beside this run (CI runs some side by side)
# cannot swap a binary that is started again mid-run.
private_binaries() {
    mkdir -p "$RUN/bin"
    cp "$MCP_RESUME" "$FAULT_PROXY" "$REFERENCE_CLIENT" "$RUN/bin/"
    MCP_RESUME="$RUN/bin/mcp-resume"
    FAULT_PROXY="$RUN/bin/fault_proxy"
    REFERENCE_CLIENT="$RUN/bin/reference_client"
}

# kill_now PID: SIGKILL, and reap it without the shell's "Killed" notice.
kill_now() { { kill -9 "$1" && wait "$1"; } 2>/dev/null || true; }

# start_upstream NAME [PORT]: starts tests/interop/server.py (the Python SDK server, no event
# store) with the venv's $PY, on PORT (default: a free one); sets UPSTREAM_PID, UPSTREAM.
start_upstream() {
    local name=$1 port=${2:-0} line
    start "$name" "$PY" "$ROOT/tests/interop/server.py" --port "$port"
    UPSTREAM_PID=$STARTED_PID
    line=$(wait_line "$RUN/$name.out" '^server.py listening on http://' 60 "$UPSTREAM_PID") || return 1
    UPSTREAM=${line#server.py listening on }
}

# start_mcp_resume NAME ARGS...: starts `mcp-resume proxy` on a free port; sets MR_PID, MR_ADDR.
start_mcp_resume() {
    local name=$1
    shift
    start "$name" env RUST_LOG="${RUST_LOG:-info}" "$MCP_RESUME" proxy --upstream "$UPSTREAM" "$@"
    MR_PID=$STARTED_PID
    local line
    line=$(wait_line "$RUN/$name.out" '^mcp-resume listening on http://' 30 "$MR_PID") || return 1
    MR_ADDR=${line#mcp-resume listening on http://}
}

# start_fault_proxy NAME TARGET SEED [OPTIONS...]: sets FP_ADDR; logs to $RUN/NAME.jsonl.
# OPTIONS override the defaults below; `--cut-probability 0` only records (requests, Last-Event-IDs,
# the events each response carried).
start_fault_proxy() {
    local name=$1 target=$2 seed=$3
    shift 3
    start "$name" "$FAULT_PROXY" --target "$target" --seed "$seed" --min-bytes 400 --max-bytes 30000 \
        --cut-probability 0.8 --max-cuts 3 --log "$RUN/$name.jsonl" "$@"
    local line
    line=$(wait_line "$RUN/$name.out" '^fault_proxy listening on ' 30 "$STARTED_PID") || return 1
    FP_ADDR=${line#fault_proxy listening on }
}

# record NAME STATUS TEXT: one result for the summary (TEXT may span lines).
record() {
    printf '%s\n%s\n' "$2" "$3" >"$RUN/results/$1"
    log "$1: $2"
}

# start_mcp_resume_again NAME ADDR ARGS...: starts `mcp-resume proxy` on ADDR, the address a
# killed one listened on, retrying for a few seconds while the port is still being released;
# sets MR_PID, MR_ADDR.
start_mcp_resume_again() {
    local name=$1 addr=$2 attempt
    shift 2
    for ((attempt = 0; attempt < 20; attempt++)); do
        start_mcp_resume "$name" --listen "$addr" "$@" 2>/dev/null && return 0
        kill "$MR_PID" 2>/dev/null || true
        sleep 0.2
    done
    return 1
}
