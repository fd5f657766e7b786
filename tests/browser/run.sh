#!/usr/bin/env bash
# The status page in a real browser: `mcp-resume proxy --admin-listen` in front of the Python SDK
# server (tests/interop/server.py) while MCP traffic runs; headless Chromium loads the admin
# listener's page, and every number it shows must equal /metrics read at the same moment
# (tests/browser/check.mjs says how). Saves a screenshot of the page.
#
#   bash tests/browser/run.sh                                          # screenshot under target/browser/
#   BROWSER_SCREENSHOT=docs/status-page.png bash tests/browser/run.sh  # the one the README shows
#
# Installs what it needs itself, pinned (reused when present):
#   - Chromium from the distribution's packages (apt-get), when /usr/bin/chromium is missing
#   - playwright-core (npm) under target/browser/node, driving that Chromium (no browser download)
#   - the interop run's Python venv with mcp==2.3.0 (target/interop/venv), for the upstream
# Builds the release binary as the interop run does (one release build serves both), unless
# MCP_RESUME_BIN names a binary to use. Every process listens on 127.0.0.1 (free ports); all
# are stopped on exit. Env: BROWSER_KEEP=1 keeps the logs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
HERE="$ROOT/tests/browser"
WORK="$ROOT/target/browser"
NODE_DIR="$WORK/node"
PLAYWRIGHT_VERSION="1.65.2"
CHROMIUM="/usr/bin/chromium"
SCREENSHOT="$(realpath -m "${BROWSER_SCREENSHOT:-$WORK/status-page.png}")"
# shellcheck source=../interop/lib.sh
source "$ROOT/tests/interop/lib.sh"
KEEP_LOGS="${BROWSER_KEEP:-}"
begin_run browser "$WORK"

section "browser: tools (pinned)"
if [[ ! -x "$CHROMIUM" ]]; then
    echo "installing chromium from the distribution's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
log "chromium: $("$CHROMIUM" --version 2>/dev/null)"
PLAYWRIGHT_PKG="$NODE_DIR/node_modules/playwright-core/package.json"
playwright_version() { node -p "require('$PLAYWRIGHT_PKG').version" 2>/dev/null || true; }
if [[ "$(playwright_version)" != "$PLAYWRIGHT_VERSION" ]]; then
    mkdir -p "$NODE_DIR"
    [[ -f "$NODE_DIR/package.json" ]] || echo '{"name": "mcp-resume-browser", "private": true}' >"$NODE_DIR/package.json"
    # playwright-core downloads no browser: it drives the distribution's Chromium.
    (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null)
fi
log "playwright-core $(playwright_version) (node $(node --version))"
VENV="$ROOT/target/interop/venv"
ensure_python_sdk "$VENV"
PY="$VENV/bin/python"

section "browser: build"
if [[ -n "${MCP_RESUME_BIN:-}" ]]; then
    MCP_RESUME="$MCP_RESUME_BIN"
else
    build_release_binaries
fi
log "binary: $MCP_RESUME"

section "browser: the status page while traffic runs"
start_upstream upstream
log "upstream: $UPSTREAM"
start_mcp_resume mcp-resume --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --store "sqlite:$RUN/events.db"
line=$(wait_line "$RUN/mcp-resume.out" '^mcp-resume admin on http://' 30 "$MR_PID")
ADMIN=${line#mcp-resume admin on }
log "mcp-resume: http://$MR_ADDR/mcp, admin listener $ADMIN"

# The script lives in the repository; the module it imports, under target/: Node resolves bare
# imports from the script's directory, so it runs from a copy beside node_modules.
cp "$HERE/check.mjs" "$NODE_DIR/check.mjs"
mkdir -p "$(dirname "$SCREENSHOT")" "$RUN/profile"
rc=0
timeout 150 node "$NODE_DIR/check.mjs" --mcp "http://$MR_ADDR/mcp" --admin "$ADMIN" \
    --chromium "$CHROMIUM" --profile "$RUN/profile" --screenshot "$SCREENSHOT" || rc=$?
if [[ $rc -ne 0 ]]; then
    echo "browser: the check failed (exit $rc); the proxy's log:" >&2
    tail -n 30 "$RUN/mcp-resume.err" >&2 || true
    exit 1
fi
log "done in $((SECONDS - T0)) s"
