# Strait container image: both binaries and the data plane's TLS module, built on Debian bookworm, run on bookworm-slim as the
# numeric non-root user 10001, without shell tools at run time (exec-form ENTRYPOINT). The
# chart (charts/strait) runs the same image twice in one pod: once as strait-controller, once
# as strait-dataplane, sharing /run/strait (an emptyDir there) for the snapshot socket.
#   make image                       (docker, podman or buildah; IMAGE=strait:VERSION)
#   docker build -t strait:0.1.0 .
# tests/install/run.py (make test) lints this file and checks its stages, user, packages and
# labels; the build itself needs a container engine.
FROM debian:bookworm AS build
# tools/deps.sh's build packages (its test-only ones are left out)
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
RUN make -j"$(nproc)" BUILD=/out all \
 && strip --strip-unneeded /out/strait-controller /out/strait-dataplane /out/strait-tls.so

FROM debian:bookworm-slim
# make image passes the chart's appVersion and the git commit
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="strait" \
      org.opencontainers.image.description="Strait: Kubernetes ingress controller (strait-controller) and data plane (strait-dataplane)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# Only the runtime libraries the binaries link (tests/install checks them against the build),
# CA certificates for the API server and upstream TLS, iptables for the mesh's init container
# (strait-controller mesh-init runs iptables-restore); no apt lists, no package caches.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libev4 libssl3 libyajl2 libyaml-0-2 zlib1g libcurl4 libnghttp2-14 libpcre2-8-0 ca-certificates iptables \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/* /var/cache/debconf/*-old /var/log/* \
 && groupadd --system --gid 10001 strait \
 && useradd --system --uid 10001 --gid strait --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin strait \
 && mkdir -p /run/strait /etc/strait/manifests \
 && chown 10001:10001 /run/strait
COPY --from=build /out/strait-controller /out/strait-dataplane /usr/local/bin/
# the data plane's TLS module, loaded on first use from ../lib/strait/ (dataplane/tlsmod.h)
COPY --from=build /out/strait-tls.so /usr/local/lib/strait/
# file mode's default manifests (the chart's mode: file without a ConfigMap)
COPY manifests/examples /etc/strait/manifests
USER 10001:10001
EXPOSE 8080 8443 8081
# Default: the data plane. The controller container overrides the command (see the chart).
ENTRYPOINT ["/usr/local/bin/strait-dataplane"]
CMD ["--socket", "/run/strait/strait.sock", "--listen", "0.0.0.0:8080", "--admin", "127.0.0.1:8081"]
