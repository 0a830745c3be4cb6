#!/usr/bin/env bash
# Python packages the end-to-end tests use as real clients: the official MCP SDK (`mcp`).
# Idempotent: installs only what is missing or at another version.
set -eu
export PIP_ROOT_USER_ACTION=ignore
python="${PYTHON:-python3}"
want_mcp="2.3.0"
have_mcp=$("$python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null || true)
if [ "$have_mcp" != "$want_mcp" ]; then
  "$python" -m pip install --quiet --disable-pip-version-check "mcp==$want_mcp"
fi
