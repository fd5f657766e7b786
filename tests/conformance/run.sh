#!/usr/bin/env bash
# Conformance comparison: the official MCP conformance suite (@modelcontextprotocol/conformance),
# its whole active server suite at the suite's default spec version and at 2026-07-28, run
# against two upstreams with the suite's fixtures, each directly and through its own
# `mcp-resume proxy`:
#   - server.py: the Python SDK (mcp 2.3.0), DNS-rebinding protection on (Host and Origin);
#   - server.mjs: the TypeScript SDK (1.32.x), the SDK's loopback Host check (Host only: a
#     proxy that rewrote Host and did not check it itself would let a rebinding request in).
# Prints, per upstream and spec version, a table of passed/failed checks per scenario, and exits
# non-zero when a check fails through the proxy that does not fail directly: the proxy must
# not make a server less conformant, nor less safe (`dns-rebinding-protection`, issue 24).
# Failures that happen directly too (the TypeScript SDK 1.32 does not speak 2026-07-28) are
# shown, not judged.
#
#   bash tests/conformance/run.sh
#
# Installs what it needs itself, pinned, under target/ (reused when present):
#   - under target/conformance/node (npm): @modelcontextprotocol/conformance $SUITE_VERSION,
#     glob $GLOB_VERSION (on Node 20 the suite runs with node20.mjs, which gives it the
#     fs.globSync it expects from Node 22) and @modelcontextprotocol/sdk $TS_SDK_RANGE
#   - the interop suite's Python virtual environment with mcp==2.3.0 (target/interop/venv)
# Builds the binary in release mode with --all-features, as tests/interop/run.sh does.
# Every process listens on 127.0.0.1 (free ports); all are stopped on exit, whatever happens.
# Env: CONFORMANCE_KEEP=1 keeps the logs and the suite's results (always kept on failure);
# CONFORMANCE_PROXY_ARGS: more `mcp-resume proxy` options for every proxy (split on spaces),
# e.g. "--poll-after 1s", or "--allowed-hosts * --allowed-origins *" to see the comparison
# catch a proxy that lets a rebinding request through to the TypeScript server.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/tests/conformance"
WORK="$ROOT/target/conformance"
NODE_DIR="$WORK/node"
# The interop suite's environment: the same pinned SDK, installed once for both.
VENV="$ROOT/target/interop/venv"
# The newest release; 0.1.16 (npm's "latest") has no 2026-07-28 scenarios.
SUITE_VERSION="0.2.0-alpha.12"
GLOB_VERSION="15.0.0"
# The interop suite's TypeScript SDK, for server.mjs.
TS_SDK_RANGE="~1.32.0"
SPEC_VERSION="2026-07-28"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

# shellcheck source=../interop/lib.sh
source "$ROOT/tests/interop/lib.sh"
KEEP_LOGS="${CONFORMANCE_KEEP:-}"
begin_run conformance "$WORK"

# ---------------------------------------------------------------------------------------------
section "conformance: tools (pinned, under target/)"

ensure_python_sdk "$VENV"
PY="$VENV/bin/python"
log "python sdk: mcp $("$PY" -c 'import importlib.metadata as m; print(m.version("mcp"))') ($("$PY" --version))"

if [[ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]]; then
    echo "conformance: Node 20 or later is needed, found $(node --version)" >&2
    exit 1
fi
SUITE_PKG="$NODE_DIR/node_modules/@modelcontextprotocol/conformance/package.json"
GLOB_PKG="$NODE_DIR/node_modules/glob/package.json"
TS_SDK_PKG="$NODE_DIR/node_modules/@modelcontextprotocol/sdk/package.json"
pkg_version() { node -p "require('$1').version" 2>/dev/null || true; }
if [[ "$(pkg_version "$SUITE_PKG")" != "$SUITE_VERSION" || "$(pkg_version "$GLOB_PKG")" != "$GLOB_VERSION" ||
    "$(pkg_version "$TS_SDK_PKG")" != 1.32.* ]]; then
    mkdir -p "$NODE_DIR"
    [[ -f "$NODE_DIR/package.json" ]] || echo '{"name": "mcp-resume-conformance", "private": true}' >"$NODE_DIR/package.json"
    (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error \
        "@modelcontextprotocol/conformance@$SUITE_VERSION" "glob@$GLOB_VERSION" "@modelcontextprotocol/sdk@$TS_SDK_RANGE" >/dev/null)
fi
SUITE=("node")
if ! node -e 'process.exit(typeof require("node:fs").globSync === "function" ? 0 : 1)'; then
    # The shim imports `glob`, which resolves from beside it: copy it next to the installed glob.
    cp "$HERE/node20.mjs" "$HERE/node20-hooks.mjs" "$HERE/fs-shim.mjs" "$NODE_DIR/"
    SUITE+=("--import" "$NODE_DIR/node20.mjs")
fi
SUITE+=("$NODE_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js")
log "suite: @modelcontextprotocol/conformance $(pkg_version "$SUITE_PKG") (node $(node --version))"
log "typescript sdk: @modelcontextprotocol/sdk $(pkg_version "$TS_SDK_PKG")"

# ---------------------------------------------------------------------------------------------
section "conformance: build"
cargo build --release --all-features --bin mcp-resume
MCP_RESUME="$TARGET_DIR/release/mcp-resume"

# ---------------------------------------------------------------------------------------------
section "conformance: upstreams and proxies"
declare -A URL
start python "$PY" "$HERE/server.py" --port 0
line=$(wait_line "$RUN/python.out" '^server.py listening on http://' 60 "$STARTED_PID")
URL[python]=${line#server.py listening on }
start typescript env CONFORMANCE_NODE_MODULES="$NODE_DIR/node_modules" node "$HERE/server.mjs" --port 0
line=$(wait_line "$RUN/typescript.out" '^server.mjs listening on http://' 30 "$STARTED_PID")
URL[typescript]=${line#server.mjs listening on }
log "upstreams: Python SDK ${URL[python]}, TypeScript SDK ${URL[typescript]}"

# One proxy per proxied run, each with its own store, so their logs stay apart.
read -r -a PROXY_ARGS <<<"${CONFORMANCE_PROXY_ARGS:-}"
UPSTREAMS=(python typescript)
declare -A TITLE=([python]=Python [typescript]=TypeScript)
SPECS=(default "$SPEC_VERSION")
for upstream in "${UPSTREAMS[@]}"; do
    UPSTREAM=${URL[$upstream]}
    for spec in "${SPECS[@]}"; do
        name="proxy-$upstream-$spec"
        start_mcp_resume "$name" --listen 127.0.0.1:0 --store "sqlite:$RUN/$name.db" "${PROXY_ARGS[@]}"
        URL[$upstream-$spec]="http://$MR_ADDR/mcp"
        log "mcp-resume proxy for $upstream at $spec: ${URL[$upstream-$spec]} -> ${URL[$upstream]}"
    done
done

# ---------------------------------------------------------------------------------------------
# suite NAME URL SPEC: one run of the whole active server suite; results in $RUN/NAME/.
# Its exit status is not the verdict (it fails whenever any check fails, directly too):
# compare.py is.
suite() {
    local name=$1 url=$2 spec=$3 args=()
    [[ $spec != default ]] && args=(--spec-version "$spec")
    local rc=0
    run_client "suite-$name" 600 "${SUITE[@]}" server --url "$url" "${args[@]}" -o "$RUN/$name" || rc=$?
    log "suite $name: exit $rc, $(grep -E '^Total:' "$RUN/suite-$name.out" || echo 'no total')"
}
COMPARE_ARGS=()
for upstream in "${UPSTREAMS[@]}"; do
    section "conformance: $upstream upstream, directly and through the proxy, at both spec versions (four runs at once)"
    RUN_PIDS=()
    for spec in "${SPECS[@]}"; do
        suite "$upstream-$spec-direct" "${URL[$upstream]}" "$spec" &
        RUN_PIDS+=($!)
        suite "$upstream-$spec-proxied" "${URL[$upstream-$spec]}" "$spec" &
        RUN_PIDS+=($!)
        COMPARE_ARGS+=("${TITLE[$upstream]} SDK server, spec version $spec" "$RUN/$upstream-$spec-direct" "$RUN/$upstream-$spec-proxied")
    done
    for pid in "${RUN_PIDS[@]}"; do remember "$pid"; done
    wait "${RUN_PIDS[@]}" || true
done

# ---------------------------------------------------------------------------------------------
section "conformance: direct vs. through mcp-resume proxy ($((SECONDS - T0))s)"
"$PY" "$HERE/compare.py" "${COMPARE_ARGS[@]}"
