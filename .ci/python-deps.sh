#!/usr/bin/env bash
# Python packages the end-to-end tests use as real peers: the official MCP SDK (`mcp`),
# componentize-py (Python plugins: `databot plugin new --lang python`, `python_plugins.rs`), and
# Qdrant's engine (`qdrant-edge-py`) with Qdrant's gRPC protocol (`qdrant-client`, `grpcio`)
# for `tests/qdrant/edge_server.py`. Idempotent: installs only what is missing or at another
# version.
set -eu
export PIP_ROOT_USER_ACTION=ignore
python="${PYTHON:-python3}"
wanted="mcp==2.3.0 qdrant-edge-py==0.9.0 qdrant-client==1.20.0 grpcio==1.85.3 componentize-py==0.25.1"
missing=""
for pin in $wanted; do
  name=${pin%%==*}
  version=${pin##*==}
  have=$("$python" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
  if [ "$have" != "$version" ]; then
    missing="$missing $pin"
  fi
done
if [ -n "$missing" ]; then
  # shellcheck disable=SC2086 # one argument per pin
  "$python" -m pip install --quiet --disable-pip-version-check $missing
fi
