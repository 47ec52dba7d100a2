#!/usr/bin/env bash
# The test command: installs what is missing, then format check, clippy, and every test (lab included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --lab
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast
