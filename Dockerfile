# matrixrmapi container image, a drop-in for the original's `matrixrmapi`
# service in the Deploy App's compose stack (README.md, "Container").
#
#   podman build --format docker --target production -t matrixrmapi .
#   podman build --format docker --target test -t matrixrmapi-test . && podman run --rm --network=host matrixrmapi-test
#   podman build --format docker --target devel_shell -t matrixrmapi-dev . && podman run --rm -it -v "$PWD:/app" matrixrmapi-dev
#
# Every stage is Debian 13 (trixie). Only debian:trixie-slim and the Deploy
# App's two init tools come from a registry (deploy/container/base-image.sh
# makes the first locally where none is reachable), and the UI stage's npm
# packages from the npm registry (NPM_CONFIG_REGISTRY; a TLS-intercepting
# proxy's CA bundle can be lent to that step as the build secret npm_ca:
# --secret id=npm_ca,src=/etc/ssl/certs/ca-certificates.crt); KW_PRODUCT_INIT_IMAGE / KC_CLIENT_INIT_IMAGE name other images
# holding /kw_product_init and /kc_client_init (the tests use local stand-ins).
# `--format docker` keeps the HEALTHCHECK (OCI images have none).
ARG KW_PRODUCT_INIT_IMAGE=pvarki/kw_product_init:latest
ARG KC_CLIENT_INIT_IMAGE=pvarki/kc_client_init:latest

FROM ${KW_PRODUCT_INIT_IMAGE} AS kw_product_init
FROM ${KC_CLIENT_INIT_IMAGE} AS kc_client_init

# Compilers and -dev packages: what deploy/install-deps.sh installs.
FROM debian:trixie-slim AS build_base
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc meson ninja-build pkg-config python3 openssl sqlite3 curl ca-certificates \
        libmicrohttpd-dev libgnutls28-dev libjansson-dev libyajl-dev libcurl4-openssl-dev libssl-dev \
        libsqlite3-dev libzip-dev libcmocka-dev \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

# The release binary. Only the files the build reads, so that editing tests
# or documentation does not rebuild it.
FROM build_base AS build
WORKDIR /src
COPY meson.build meson_options.txt ./
COPY lib lib
COPY api api
COPY platform platform
COPY main main
COPY reconcile reconcile
COPY schema schema
COPY tools tools
COPY deploy/openapi.json deploy/openapi.json
COPY deploy/systemd deploy/systemd
COPY docs/matrixrmapi.8 docs/matrixrmapi.8
# No systemd in a container, so no sd_notify (meson option systemd).
RUN meson setup /build -Dtests=false -Dsystemd=disabled --buildtype=release >/dev/null \
    && ninja -C /build \
    && strip /build/matrixrmapi

# The Matrix page (ui/), built here from the committed lock file, so that a
# fresh clone's image serves it with no npm step on the host. Node.js and npm
# are Debian 13's packages (nodejs 20.19, npm 9.2; Vite needs Node >= 20.19).
# The dependencies are a layer of their own, rebuilt only when the lock
# file changes. The build is checked: no remoteEntry.js, no image.
FROM debian:trixie-slim AS ui
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nodejs npm ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
WORKDIR /ui
ARG NPM_CONFIG_REGISTRY=https://registry.npmjs.org/
COPY ui/package.json ui/package-lock.json ./
RUN --mount=type=secret,id=npm_ca \
    if [ -f /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi \
    && npm ci --no-audit --no-fund --loglevel=error
COPY ui/ ./
RUN npm run build && test -s dist/remoteEntry.js && mkdir /out && cp -a dist/. /out/

# Unit and integration suites on Debian 13 (libmicrohttpd 1.0, OpenSSL 3.5):
# nginx for the header-mode check behind nginx, groff and man for the man
# page's test, systemd's systemd-analyze for the units' test, strace for the
# system call filter's, etcd-server, kubectl and python3-yaml for the test
# Kubernetes API server and the manifests' test. `podman run --rm
# --network=host IMAGE` runs them; the exit status is theirs.
FROM build_base AS test
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx libnginx-mod-stream \
        groff-base man-db systemd strace etcd-server kubectl python3-yaml \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
WORKDIR /app
COPY . /app
RUN meson setup /build --werror >/dev/null && ninja -C /build
CMD ["meson", "test", "-C", "/build", "--print-errorlogs", "--num-processes", "2", "--suite", "unit", "--suite", "integration"]

# Hacking: the compilers plus debuggers; mount the checkout on /app.
FROM build_base AS devel_shell
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gdb valgrind nginx libnginx-mod-stream git less \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=kw_product_init /kw_product_init /kw_product_init
COPY --from=kc_client_init /kc_client_init /kc_client_init
WORKDIR /app
VOLUME /app
CMD ["bash", "-l"]

# What runs in the stack: the binary, its runtime libraries, tini, the init
# tools and the entrypoint. The service runs as matrixrmapi (UID/GID 8012).
FROM debian:trixie-slim AS production
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libmicrohttpd12t64 libgnutls30t64 libjansson4 libyajl2 libcurl4t64 libssl3t64 libsqlite3-0 libzip5 \
        ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* \
    && groupadd --system --gid 8012 matrixrmapi \
    && useradd --system --uid 8012 --gid 8012 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin matrixrmapi \
    && mkdir -p /data/persistent /pvarki /ui_files /ca_public
COPY --from=kw_product_init /kw_product_init /kw_product_init
COPY --from=kc_client_init /kc_client_init /kc_client_init
COPY --from=ui /out /usr/share/matrixrmapi/ui
COPY --from=build /build/matrixrmapi /usr/local/bin/matrixrmapi
COPY deploy/container/entrypoint.sh /usr/local/bin/matrixrmapi-entrypoint
# The stack's nginx reaches the service from another container of the same
# private network: believe its client DN header from private addresses (the
# port is never published). Narrow it when the network is known.
ENV LISTEN_PORT=8012 \
    MTLS_TRUSTED_PROXIES=127.0.0.1,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7
EXPOSE 8012
VOLUME ["/data/persistent", "/pvarki", "/ui_files", "/ca_public"]
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 CMD ["matrixrmapi", "healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/matrixrmapi-entrypoint"]
CMD ["serve"]
