#!/usr/bin/env bash
# The packaged forms, built and tested as a user gets them: the crate (`cargo package`,
# `cargo install`) and the Python wheel (`pip install mcp-resume`, `uvx mcp-resume`).
#
#   bash packaging/run.sh
#
# 1. crate: `cargo package` builds the crate from its packaged form (target/package; the files
#    are Cargo.toml's `include`), and `cargo install --path .` installs the binary (--debug: it
#    reuses the debug build; the release build is the wheel's) and runs `mcp-resume --version`;
# 2. wheel: builds it (pyproject.toml: maturin's binary packaging, release mode) with maturin
#    and uv from PyPI, pinned, in a virtual environment under target/packaging/tools;
# 3. installs it into a fresh virtual environment from the file alone (--no-index) and runs the
#    installed `mcp-resume --version`, and the same through `uvx --from <wheel>`;
# 4. runs a short session through the installed `mcp-resume proxy`: the Python SDK's server
#    (tests/interop/server.py, mcp pinned by tests/interop/python-sdk.sh) behind it, the Python
#    SDK's client (tests/interop/client.py) in front, with `--poll-after` so that the client
#    resumes its call's stream with Last-Event-ID; every notification must arrive once.
# Prints the crate's and the wheel's sizes and the wheel's install time. Uploads nothing
# (docs/releasing.md). Every process listens on 127.0.0.1 (free ports); all are stopped on exit.
# Exits non-zero on any failure. Env: PACKAGING_KEEP=1 keeps the logs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
MATURIN_VERSION="1.16.0"
UV_VERSION="0.13.8"
WORK="$ROOT/target/packaging"
TOOLS="$WORK/tools"
DIST="$WORK/dist"
# The interop runs' Python SDK environment, shared (created there when missing).
SDK_VENV="$ROOT/target/interop/venv"
# shellcheck source=../tests/interop/python-sdk.sh
source "$ROOT/tests/interop/python-sdk.sh"

mkdir -p "$WORK"
RUN="$(mktemp -d "$WORK/run.XXXXXX")"
PIDS=()
T0=$SECONDS

section() { printf '\n== %s ==\n' "$*"; }
log() { printf '[packaging %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
fail() {
    echo "packaging: $*" >&2
    exit 1
}

cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    # Only the processes this script started, while they still run.
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ $status -ne 0 || -n "${PACKAGING_KEEP:-}" ]]; then
        echo "packaging: logs kept in $RUN"
    else
        rm -rf "$RUN"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background, output to $RUN/NAME.out and $RUN/NAME.err;
# sets STARTED_PID.
start() {
    local name=$1
    shift
    "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

# wait_line FILE REGEX PID: prints the first line of FILE matching REGEX, waiting up to 30 s for it
# while process PID runs.
wait_line() {
    local file=$1 pattern=$2 pid=$3 i
    for ((i = 0; i < 300; i++)); do
        if grep -m1 -E "$pattern" "$file" 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -m1 -E "$pattern" "$file" 2>/dev/null && return 0
    echo "packaging: no line matching '$pattern' in $file" >&2
    tail -n 20 "${file%.out}.err" >&2 2>/dev/null || true
    return 1
}

# millis: a monotonic clock in milliseconds.
millis() { python3 -c 'import time; print(int(time.monotonic() * 1000))'; }

# The crate's version (what every `--version` must print) and cargo's target directory.
read -r CRATE_VERSION TARGET_DIR < <(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
meta = json.load(sys.stdin)
print(next(p["version"] for p in meta["packages"] if p["name"] == "mcp-resume"), meta["target_directory"])')

# ---------------------------------------------------------------------------------------------
section "crate: cargo package (builds the packaged form), cargo install --path ."
# --allow-dirty: a developer's uncommitted changes are packaged too (CI's clone is clean).
cargo package --locked --allow-dirty
CRATE="$TARGET_DIR/package/mcp-resume-$CRATE_VERSION.crate"
[[ -f "$CRATE" ]] || fail "cargo package wrote no $CRATE"
tar -tzf "$CRATE" >"$RUN/crate-files"
for required in Cargo.toml Cargo.lock README.md LICENSE-MIT LICENSE-APACHE examples/walkthrough.sh; do
    grep -qx "mcp-resume-$CRATE_VERSION/$required" "$RUN/crate-files" || fail "the crate lacks $required"
done
CRATE_KIB=$(($(stat -c %s "$CRATE") / 1024))
log "crate: $(basename "$CRATE"), $CRATE_KIB KiB, $(wc -l <"$RUN/crate-files") files"
cargo install --locked --debug --path . --root "$RUN/cargo-root"
version=$("$RUN/cargo-root/bin/mcp-resume" --version)
[[ "$version" == "mcp-resume $CRATE_VERSION" ]] || fail "the cargo-installed mcp-resume --version printed '$version'"
log "cargo install --path .: $version"

# ---------------------------------------------------------------------------------------------
section "wheel: tools (maturin $MATURIN_VERSION, uv $UV_VERSION, from PyPI, in target/packaging/tools)"
[[ -x "$TOOLS/bin/python" ]] || python3 -m venv "$TOOLS"
installed() { "$TOOLS/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }
if [[ "$(installed maturin)" != "$MATURIN_VERSION" || "$(installed uv)" != "$UV_VERSION" ]]; then
    "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check \
        "maturin==$MATURIN_VERSION" "uv==$UV_VERSION"
fi
log "$("$TOOLS/bin/maturin" --version), $("$TOOLS/bin/uv" --version)"

# ---------------------------------------------------------------------------------------------
section "wheel: build (maturin build --release)"
rm -rf "$DIST"
started=$(millis)
"$TOOLS/bin/maturin" build --release --out "$DIST"
log "built in $((($(millis) - started) / 1000)) s"
shopt -s nullglob
wheels=("$DIST"/mcp_resume-*.whl)
shopt -u nullglob
[[ ${#wheels[@]} -eq 1 ]] || fail "expected one wheel in $DIST, found ${#wheels[@]}"
WHEEL=${wheels[0]}
[[ "$(basename "$WHEEL")" == "mcp_resume-$CRATE_VERSION-"* ]] ||
    fail "the wheel $(basename "$WHEEL") does not carry the crate's version $CRATE_VERSION"
# What the wheel holds: the binary, its metadata and the two licence texts, no Python code.
"$TOOLS/bin/python" - "$WHEEL" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for name in names:
    print("  " + name)
binaries = [n for n in names if n.endswith(".data/scripts/mcp-resume")]
licences = [n for n in names if n.rsplit("/", 1)[-1] in ("LICENSE-MIT", "LICENSE-APACHE")]
if len(binaries) != 1 or len(licences) != 2:
    sys.exit(f"packaging: expected the binary and both licence files in the wheel, got {names}")
EOF
WHEEL_BYTES=$(stat -c %s "$WHEEL")
log "wheel: $(basename "$WHEEL"), $((WHEEL_BYTES / 1024)) KiB"

# ---------------------------------------------------------------------------------------------
section "wheel: install into a fresh virtual environment"
python3 -m venv "$RUN/venv"
started=$(millis)
"$RUN/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index "$WHEEL"
INSTALL_MS=$(($(millis) - started))
log "pip install: $INSTALL_MS ms"
MCP_RESUME="$RUN/venv/bin/mcp-resume"
[[ -x "$MCP_RESUME" ]] || fail "pip did not install $MCP_RESUME"
version=$("$MCP_RESUME" --version)
[[ "$version" == "mcp-resume $CRATE_VERSION" ]] || fail "mcp-resume --version printed '$version'"
log "$MCP_RESUME --version: $version"

# uvx runs the wheel in a throwaway environment of its own; --offline: from the file alone.
version=$(UV_CACHE_DIR="$RUN/uv-cache" UV_PYTHON_DOWNLOADS=never "$TOOLS/bin/uvx" --offline \
    --python "$TOOLS/bin/python" --from "$WHEEL" mcp-resume --version)
[[ "$version" == "mcp-resume $CRATE_VERSION" ]] || fail "uvx --from <wheel> mcp-resume --version printed '$version'"
log "uvx --from $(basename "$WHEEL") mcp-resume --version: $version"

# ---------------------------------------------------------------------------------------------
section "wheel: a proxy session, Python SDK server and client (mcp $PY_MCP_VERSION)"
ensure_python_sdk "$SDK_VENV"
PY="$SDK_VENV/bin/python"
start upstream "$PY" tests/interop/server.py --port 0
line=$(wait_line "$RUN/upstream.out" '^server.py listening on http://' "$STARTED_PID")
UPSTREAM=${line#server.py listening on }
# --poll-after 1s: the proxy ends each SSE response after a second and the client resumes it
# with Last-Event-ID, so the session proves replay through the installed binary, not only relay.
start proxy env RUST_LOG=info "$MCP_RESUME" proxy --upstream "$UPSTREAM" --listen 127.0.0.1:0 \
    --store "sqlite:$RUN/events.db" --poll-after 1s --retry 100ms
line=$(wait_line "$RUN/proxy.out" '^mcp-resume listening on http://' "$STARTED_PID")
PROXY=${line#mcp-resume listening on http://}
log "upstream $UPSTREAM, installed mcp-resume proxy on $PROXY"
timeout 60 "$PY" tests/interop/client.py --mode poll --url "http://$PROXY/mcp" --tool long_task \
    --args '{"seconds": 4, "count": 40}' --timeout 20 --results "$RUN/session.json" ||
    fail "the Python SDK client exited non-zero"
summary=$("$PY" tests/interop/check.py --name wheel-session --mode poll --results "$RUN/session.json" \
    --expect 40 --min-resumes 2) || fail "$summary"
log "session: $summary"

section "packaging: summary ($((SECONDS - T0)) s)"
echo "crate: $(basename "$CRATE"), $CRATE_KIB KiB: cargo package verified, cargo install --path . ok"
echo "wheel: $(basename "$WHEEL"), $((WHEEL_BYTES / 1024)) KiB: pip install ${INSTALL_MS} ms, --version, uvx, a proxy session with resumes ok"
