#!/usr/bin/env bash
# The test command: set up (idempotent), then every test, in the release
# profile so the tests reuse the build that set-up made.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
cargo test --release "$@"
