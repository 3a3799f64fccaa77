#!/usr/bin/env bash
# Prints the wall time of `jisu-deploy plan` on the bundled example (push to main), built
# with the release profile the action image uses: median, min and max over N runs.
# Usage: bash ci/bench-plan.sh [RUNS]   (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
cargo build --release --locked -q -p jisu-deploy
bin="${CARGO_TARGET_DIR:-target}/release/jisu-deploy"
args=(plan --config examples/jisu/jisu-deploy.yml --event examples/jisu/events/push-main.json)
"$bin" "${args[@]}" >/dev/null   # warm the page cache
times=()
for _ in $(seq "$runs"); do
  start=$(date +%s%N)
  "$bin" "${args[@]}" >/dev/null
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p")
echo "plan wall time over $runs runs: median ${median} us, min $(echo "$sorted" | head -1) us, max $(echo "$sorted" | tail -1) us"
echo "release binary: $(stat -c %s "$bin") bytes (stripped)"
