#!/usr/bin/env bash
# Installs what the registry integration tests (tests/it/registry.rs) start or call:
#   docker-registry  CNCF distribution 2.8, started per test on 127.0.0.1
#   apache2-utils    htpasswd, for the Basic-auth registry
#   skopeo           independent reader/copier the tests compare against
#   buildah, umoci   image building without a Docker daemon (used by the build/push steps)
#   openssl          signs the JWTs of the test token service (Bearer-auth registry)
# Idempotent: installs only what is missing; safe to run on every CI run.
set -euo pipefail

need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v openssl >/dev/null 2>&1 || need+=(openssl)

if ((${#need[@]})); then
  echo "install-registry-testbed: installing ${need[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}"
fi

# The Debian package may enable a system registry on :5000 under systemd; the tests start
# their own on free ports and do not need it, so it is left as the package set it up.
docker-registry --version
skopeo --version
command -v htpasswd umoci buildah openssl
