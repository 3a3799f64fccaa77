#!/usr/bin/env bash
# The whole test suite: installs what it needs, validates the manifests, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install-test-deps.sh
bash ci/validate-manifests.sh
bash ci/check-packaging.sh
cargo test --workspace --locked
