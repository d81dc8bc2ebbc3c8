# Multi-stage build: compile in the Rust image, ship the binary alone in a slim image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sentinela

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sentinela /usr/local/bin/sentinela
# Sidecar defaults: JSON logs on stdout, state on a volume, endpoints reachable by the kubelet.
ENV SENTINELA_LOG_FORMAT=json \
    SENTINELA_STATE__DIR=/var/lib/sentinela \
    SENTINELA_HTTP__LISTEN=0.0.0.0:9717
RUN mkdir -p /var/lib/sentinela && chown 65532:65532 /var/lib/sentinela
VOLUME /var/lib/sentinela
USER 65532:65532
EXPOSE 9717
ENTRYPOINT ["/usr/local/bin/sentinela"]
CMD ["run"]
