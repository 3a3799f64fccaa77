#!/usr/bin/env bash
# Installs jisu-deploy for the setup action (setup/action.yml) and adds it to PATH.
#
# Inputs, from the action's environment:
#   JISU_VERSION  v1, v1.4 or v1.4.2
#   JISU_SOURCE   image (copy out of the released image) or release (download the asset)
#   JISU_SHA256   release: the checksum the binary must have (default: the published one)
# Overridable for tests and mirrors:
#   JISU_IMAGE     the action image repository      [ghcr.io/jisu/deploy-action]
#   JISU_RELEASES  base URL of the release downloads [https://github.com/jisu/deploy-action/releases/download]
#
# Under act (ACT=true) a jisu-deploy already on PATH is used as it is: a local run tests
# the binary you built, not a download.
set -euo pipefail

asset=jisu-deploy-x86_64-linux
version="${JISU_VERSION:-v1}"
source_kind="${JISU_SOURCE:-image}"
want_sha="${JISU_SHA256:-}"
image="${JISU_IMAGE:-ghcr.io/jisu/deploy-action}"
releases="${JISU_RELEASES:-https://github.com/jisu/deploy-action/releases/download}"
dir="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/jisu-deploy-bin"

fail() {
  # One line, as a workflow error annotation.
  echo "::error title=jisu-deploy setup::$1"
  exit 1
}

publish() {
  local path="$1" printed
  printed="$("$path" --version)" || fail "$path does not run on this runner"
  echo "installed $printed at $path"
  if [ -n "${GITHUB_OUTPUT:-}" ]; then
    printf 'path=%s\nversion=%s\n' "$path" "$printed" >>"$GITHUB_OUTPUT"
  fi
}

if [ "${ACT:-}" = true ] && command -v jisu-deploy >/dev/null 2>&1; then
  echo "local run under act: using the jisu-deploy on PATH instead of downloading $version"
  publish "$(command -v jisu-deploy)"
  exit 0
fi

version_pattern='^v[0-9]+(\.[0-9]+(\.[0-9]+(-[0-9A-Za-z.-]+)?)?)?$'
[[ "$version" =~ $version_pattern ]] ||
  fail "version '$version' is not a release: write v1, v1.4 or v1.4.2"
if [ "${RUNNER_OS:-Linux}" != Linux ] || [ "${RUNNER_ARCH:-X64}" != X64 ]; then
  fail "the released binary is for Linux x86-64; this runner is ${RUNNER_OS:-?} ${RUNNER_ARCH:-?}"
fi

mkdir -p "$dir"
binary="$dir/jisu-deploy"
case "$source_kind" in
  image)
    command -v docker >/dev/null 2>&1 ||
      fail "source: image needs Docker on the runner; use source: release instead"
    docker pull --quiet "$image:$version" >/dev/null
    echo "image $(docker image inspect --format '{{index .RepoDigests 0}}' "$image:$version")"
    container="$(docker create "$image:$version")"
    trap 'docker rm "$container" >/dev/null' EXIT
    docker cp "$container:/usr/local/bin/jisu-deploy" "$binary" >/dev/null
    ;;
  release)
    full_pattern='^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$'
    [[ "$version" =~ $full_pattern ]] ||
      fail "source: release needs a full version such as v1.4.2, not '$version'"
    # Bounded reads: the binary is about 15 MB (a debug build, which tests serve, is
    # larger), its checksum file one line.
    curl --fail --silent --show-error --location --retry 3 --max-filesize 1073741824 \
      --output "$binary" "$releases/$version/$asset" ||
      { rm -f "$binary"; fail "could not download $asset $version from $releases"; }
    if [ -z "$want_sha" ]; then
      want_sha="$(curl --fail --silent --show-error --location --retry 3 --max-filesize 4096 \
        "$releases/$version/$asset.sha256" | cut -d' ' -f1)" ||
        { rm -f "$binary"; fail "could not download $asset.sha256 $version from $releases"; }
    fi
    sha_pattern='^[0-9a-f]{64}$'
    [[ "$want_sha" =~ $sha_pattern ]] || fail "the expected sha256 '$want_sha' is not 64 hex digits"
    got_sha="$(sha256sum "$binary" | cut -d' ' -f1)"
    if [ "$got_sha" != "$want_sha" ]; then
      rm -f "$binary"
      fail "$asset $version has sha256 $got_sha, expected $want_sha; nothing was installed"
    fi
    echo "sha256 $got_sha matches"
    ;;
  *)
    fail "source '$source_kind' is neither image nor release"
    ;;
esac
chmod 0755 "$binary"
publish "$binary"
if [ -n "${GITHUB_PATH:-}" ]; then
  echo "$dir" >>"$GITHUB_PATH"
fi
