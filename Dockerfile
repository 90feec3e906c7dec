# syntax=docker/dockerfile:1
# taskfleet's image: one image for both processes (`taskfleet-api`, `taskfleet-worker`; the
# compose file picks one with `command`). Built in the Rust image, run on a slim Debian with
# the tools the processors call (ffmpeg, espeak-ng, fonts), as a non-root user.

FROM rust:1-bookworm AS builder
# cmake: aws-lc-sys (TLS for the object-store client) may build its C code with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the build between builds; the binaries are copied
# out of the cached target dir, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p taskfleet-api -p taskfleet-worker \
      --features taskfleet-api/object-store,taskfleet-worker/object-store \
 && mkdir -p /out \
 && cp target/release/taskfleet-api target/release/taskfleet-worker /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg espeak-ng fonts-dejavu-core ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid, so the artifacts volume shared by api and worker containers has one owner. The
# artifacts dir is created here, owned by that user: a fresh named volume mounted on it takes
# its ownership.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/taskfleet taskfleet \
 && mkdir -p /var/lib/taskfleet/artifacts \
 && chown -R taskfleet:taskfleet /var/lib/taskfleet
COPY --from=builder /out/taskfleet-api /out/taskfleet-worker /usr/local/bin/
USER taskfleet
WORKDIR /var/lib/taskfleet
ENV TASKFLEET__ARTIFACTS__DIR=/var/lib/taskfleet/artifacts \
    TASKFLEET__API__LISTEN=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080
CMD ["taskfleet-api"]
