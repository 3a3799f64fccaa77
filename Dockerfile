# syntax=docker/dockerfile:1
# The action's image: the release binary on a distroless glibc base.
#
# Why glibc on distroless/cc rather than static musl on scratch: the musl target cannot
# be installed on the machines this project is built and tested on, so CI could never
# check that image; the glibc build below is the one CI builds too (same Debian 12
# toolchain, same profile, same flags) and checks with ldd against what
# distroless/cc-debian12 ships (glibc 2.36, libgcc_s, CA certificates). It also keeps
# glibc's resolver, which a static glibc binary cannot load.

# The runtime base. A build argument used in FROM must come before the first FROM.
ARG RUNTIME=gcr.io/distroless/cc-debian12:latest

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crates/kube-sim/Cargo.toml crates/kube-sim/Cargo.toml
RUN mkdir -p src crates/kube-sim/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs crates/kube-sim/src/lib.rs \
    && cargo build --release --locked -p jisu-deploy \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked -p jisu-deploy \
    && cp target/release/jisu-deploy /jisu-deploy

# The binary alone, for the release asset: `docker buildx build --target binary --output
# type=local,dest=dist .` writes the very file the image below carries.
FROM scratch AS binary
COPY --from=build /jisu-deploy /jisu-deploy

# The backup image (`--target backup`): the same binary with the client tools `backup`
# and `restore` run, for the CronJob in k8s/backup/. Released as `<version>-backup`.
FROM debian:bookworm-slim AS backup
# Debian's security updates replace these versions within bookworm; pinning them would
# break the build at the next update rather than make it repeatable.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-client redis-tools \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /jisu-deploy /usr/local/bin/jisu-deploy
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/jisu-deploy"]

# Docker actions run as root (GitHub mounts the workspace and runner files for root),
# so this image keeps distroless's default user. distroless publishes only rolling tags:
# the release workflow resolves the tag to a digest and passes it as RUNTIME (above).
FROM ${RUNTIME}
COPY --from=build /jisu-deploy /usr/local/bin/jisu-deploy
ENTRYPOINT ["/usr/local/bin/jisu-deploy"]
