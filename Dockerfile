# matrixrmapi container image: build stage with the -dev packages, production
# stage with only the runtime libraries. Build: podman build --target production -t matrixrmapi .
FROM debian:bookworm-slim AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc meson ninja-build pkg-config python3 libmicrohttpd-dev libgnutls28-dev libjansson-dev \
        libcurl4-openssl-dev libssl-dev libsqlite3-dev libzip-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY meson.build meson_options.txt ./
COPY src src
COPY reconcile reconcile
COPY schema schema
COPY tools tools
COPY deploy/openapi.json deploy/openapi.json
RUN meson setup /build -Dtests=false --buildtype=release && ninja -C /build && strip /build/matrixrmapi

FROM debian:bookworm-slim AS production
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libmicrohttpd12 libgnutls30 libjansson4 libcurl4 libssl3 libsqlite3-0 libzip4 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data/persistent
COPY --from=build /build/matrixrmapi /usr/local/bin/matrixrmapi
EXPOSE 4625
VOLUME /data/persistent
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s CMD ["matrixrmapi", "healthcheck"]
ENTRYPOINT ["matrixrmapi"]
CMD ["serve"]
