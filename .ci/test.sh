#!/usr/bin/env bash
# Every test of the project: formatting, lints, unit tests, end-to-end tests with real
# guest components. Idempotent set-up first, so it passes on a fresh clone.
set -eu
cd "$(dirname "$0")/.."

# The pinned toolchain and the guest target (rustup's auto-install may be off).
toolchain=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain install "$toolchain" --profile minimal --component rustfmt,clippy --target wasm32-wasip2 >/dev/null

cargo fmt --all --check
cargo fmt --manifest-path plugins/Cargo.toml --all --check
cargo fmt --manifest-path tests/fixtures/Cargo.toml --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
