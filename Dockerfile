# Strait container image: both binaries, built on Debian bookworm, run on bookworm-slim as a
# non-root user. The chart (charts/strait) runs the same image twice in one pod: once as
# strait-controller, once as strait-dataplane.
#   docker build -t strait .
FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libev-dev libssl-dev libyajl-dev libyaml-dev zlib1g-dev \
      libcurl4-openssl-dev libnghttp2-dev libpcre2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY common ./common
COPY controller ./controller
COPY dataplane ./dataplane
RUN make -j"$(nproc)" BUILD=/out all

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libev4 libssl3 libyajl2 libyaml-0-2 zlib1g libcurl4 libnghttp2-14 libpcre2-8-0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 strait \
 && useradd --system --uid 10001 --gid strait --no-create-home --shell /usr/sbin/nologin strait \
 && mkdir -p /run/strait /etc/strait/manifests \
 && chown strait:strait /run/strait
COPY --from=build /out/strait-controller /out/strait-dataplane /usr/local/bin/
COPY manifests/examples /etc/strait/manifests
USER 10001:10001
EXPOSE 8080 8081
# Default: the data plane. The controller container overrides the command (see the chart).
ENTRYPOINT ["/usr/local/bin/strait-dataplane"]
CMD ["--socket", "/run/strait/strait.sock", "--listen", "0.0.0.0:8080", "--admin", "127.0.0.1:8081"]
