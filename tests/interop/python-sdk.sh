# Sourced by tests/interop/run.sh and benches/run.sh: the official Python MCP SDK, pinned,
# in a virtual environment (installed from PyPI when missing, reused when present).

PY_MCP_VERSION="2.3.0"

# ensure_python_sdk VENV: makes VENV a virtual environment with mcp==$PY_MCP_VERSION.
ensure_python_sdk() {
    local venv=$1
    if [[ ! -x "$venv/bin/python" ]]; then
        python3 -m venv "$venv"
    fi
    if [[ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null)" != "$PY_MCP_VERSION" ]]; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mcp==$PY_MCP_VERSION"
    fi
}
