# syntax=docker/dockerfile:1
#
# xipgate container image.
#
#   docker build -t registry.example.com/xipgate:0.1.0 .
#
# Needs BuildKit (the default builder since Docker 23; also buildah/podman):
# the cargo registry and target/ are cache mounts, so rebuilds after a source
# change recompile only xipgate, not Pingora and the other dependencies.
#
# With a binary built outside (CI that has compiled it already; tests/image.rs):
#
#   install -D target/release/xipgate dist/xipgate
#   docker build --build-arg BINARY_FROM=prebuilt -t xipgate .
#
# The binary must be built on Debian bookworm (glibc 2.36, libssl3) or older.
# Builders that skip unused stages (BuildKit, buildah) then never run `build`.

# Where /out/xipgate comes from: `build` (compiled here) or `prebuilt` (dist/xipgate).
ARG BINARY_FROM=build

# ---- build -------------------------------------------------------------------
FROM rust:1-bookworm AS build
# cmake: zlib-ng's build. libssl-dev + pkg-config: Pingora's TLS links Debian's OpenSSL
# (.cargo/config.toml sets OPENSSL_NO_VENDOR; docs/https.md says why).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# vendor/: the patched pingora-proxy Cargo.toml's [patch.crates-io] names.
COPY vendor vendor
# Download dependencies in their own layer (invalidated only by Cargo.* and vendor/).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo fetch --locked
COPY . .
# target/ is a cache mount, so the binary is copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin xipgate \
 && install -D -m 0755 target/release/xipgate /out/xipgate

# ---- prebuilt ----------------------------------------------------------------
FROM scratch AS prebuilt
COPY dist/xipgate /out/xipgate

# ---- the binary, from either ---------------------------------------------------
FROM ${BINARY_FROM} AS binary

# ---- runtime -----------------------------------------------------------------
# bookworm-slim rather than distroless: same glibc as the build stage, and it
# has /bin/sleep for the Kubernetes preStop hook (k8s/deployment.yaml).
FROM debian:bookworm-slim
# uid/gid 10001 as in k8s/deployment.yaml. /run/xipgate holds pid_file and
# upgrade_sock (Kubernetes mounts an emptyDir there: its root fs is read-only).
# libssl3: the OpenSSL the binary links (HTTPS listeners and TLS to instances).
# apt runs only when the base lacks them (a local base may carry them already:
# it/image/base.sh, for building without a network).
RUN { dpkg -s ca-certificates libssl3 >/dev/null 2>&1 \
      || { apt-get update \
           && apt-get install -y --no-install-recommends ca-certificates libssl3 \
           && rm -rf /var/lib/apt/lists/*; }; } \
 && groupadd --system --gid 10001 xipgate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin xipgate \
 && install -d -o 10001 -g 10001 -m 0750 /run/xipgate
COPY --from=binary /out/xipgate /usr/local/bin/xipgate
# A default config so that `docker run` works with env overrides alone
# (REGISTRY_HOST, REGISTRY_PORT, XIP_DOMAIN, XIP_IP, WEB_DOMAIN). Kubernetes
# mounts its ConfigMap over /etc/xipgate.
COPY k8s/xipgate.yaml /etc/xipgate/xipgate.yaml
ENV RUST_LOG=info
USER 10001:10001
# 8080 proxy, 8443 HTTPS (with xipgate.tls), 9080 console/API/healthz/readyz/metrics,
# 5353 built-in DNS.
EXPOSE 8080 8443 9080 5353/udp 5353/tcp
# SIGTERM = graceful shutdown (stop accepting, drain in-flight requests).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/xipgate"]
CMD ["-c", "/etc/xipgate/xipgate.yaml"]
