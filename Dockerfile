# syntax=docker/dockerfile:1
#
# databot: the host binary (the first-party plugins are compiled into it) on Debian slim.
#
#   docker build -t databot:0.1.0 .
#   docker run --rm -p 8080:8080 -e DATABOT_API_KEY=... \
#     -v "$PWD/databot.yaml:/etc/databot/databot.yaml:ro" databot:0.1.0
#
# The image holds no configuration: mount one at /etc/databot/databot.yaml (on Kubernetes the
# ConfigMap in deploy/kubernetes/configmap.yaml). A gateway bound to anything but loopback needs
# gateway.api_keys, so a container's config binds 0.0.0.0:8080 with keys from ${VAR}s.
# Scaling and the deployment files: docs/scaling.md.

# ---- builder ---------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# rdkafka-sys compiles librdkafka from source (C compiler and make, already in this image);
# cmake and the curl headers are what its CMake build needs, should the feature set change.
# zlib is linked statically (rdkafka's `libz-static`), SQLite is bundled by sqlx, TLS is rustls:
# nothing here ends up as a shared library the runtime stage must carry.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# The toolchain pinned in rust-toolchain.toml, with the guests' target: host/build.rs builds the
# plugins in plugins/ for wasm32-wasip2 with a nested cargo and embeds the components.
COPY rust-toolchain.toml ./
RUN toolchain="$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)" \
 && test -n "$toolchain" \
 && rustup toolchain install "$toolchain" --profile minimal --target wasm32-wasip2 \
 && rustup target list --installed --toolchain "$toolchain" | grep -qx wasm32-wasip2

# The whole workspace: cargo reads every member's manifest (host, sdk, tests) even to build one
# package, and the host's build script reads plugins/, sdk/ and wit/.
COPY . .

# Registry, git and target directories are build caches, not layers. The guests are built into
# target/guests by the nested cargo (its own lockfile: plugins/Cargo.lock).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p databot \
 && install -D -m 0755 target/release/databot /out/databot

# ---- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: the gRPC clients (Qdrant over https, OTLP export) read the system trust
# store; plugin HTTP egress uses rustls with its own roots. Nothing else is linked dynamically
# but glibc and libgcc, both in the base image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed non-root uid/gid (10001) so Kubernetes' runAsNonRoot can check it and volume
# ownership (fsGroup) matches.
RUN groupadd --system --gid 10001 databot \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin databot \
 && mkdir -p /data /plugins /etc/databot \
 && chown 10001:10001 /data /plugins

COPY --from=builder /out/databot /usr/local/bin/databot

# runtime.data_dir: compile cache, tool-group switches, plugin files (state is in PostgreSQL
# with the Kafka bus). runtime.plugins_dir is /plugins in the deployment's config.
VOLUME ["/data"]
WORKDIR /data

USER 10001:10001

# gateway.bind in the deployment's config (0.0.0.0:8080).
EXPOSE 8080

# No HEALTHCHECK: the image carries no HTTP client, and orchestrators probe GET /health
# (liveness) and GET /ready (readiness) themselves (deploy/kubernetes/deployment.yaml).
ENTRYPOINT ["databot"]
CMD ["serve", "--config", "/etc/databot/databot.yaml"]
