# syntax=docker/dockerfile:1
#
# ngx_http_flashsale_module in a container: Debian 12's own nginx with the
# module, running examples/docker.conf as www-data on port 8080.
#
#   (umask 077; openssl rand -base64 48 > flashsale.keys)
#   chmod 0644 flashsale.keys      # nginx runs as www-data in the container
#   docker compose up --build      # with Redis, see docker-compose.yml
#
# or, with a Redis of your own that the container resolves as "redis":
#
#   docker build -t ngx-flashsale .
#   docker run -p 8080:8080 --add-host redis:10.0.0.5 \
#       -v "$PWD/flashsale.keys:/run/secrets/flashsale_keys:ro" ngx-flashsale
#
# Every step is a script CI also runs: scripts/deps.sh and scripts/build.sh
# are what `make test` runs, and t/70-examples.t checks that this file only
# calls scripts that exist and are executable, runs their --check modes, and
# runs `nginx -t` on the configuration copied below.

# ---- build: the module, against the nginx-dev sources of the nginx the
# final stage installs (both stages are the same Debian release)
FROM debian:bookworm-slim AS build
WORKDIR /src
COPY . .
RUN scripts/deps.sh --build
RUN scripts/build.sh

# ---- the image: nginx, two libraries, curl for the health check
FROM debian:bookworm-slim
COPY scripts/deps.sh /usr/local/lib/flashsale/deps.sh
RUN /usr/local/lib/flashsale/deps.sh --runtime && rm -rf /var/lib/apt/lists/*

COPY --from=build /src/build/ngx_http_flashsale_module.so /usr/lib/nginx/modules/ngx_http_flashsale_module.so
COPY examples/docker.conf /etc/nginx/nginx.conf
COPY examples/log_format.conf /etc/nginx/flashsale/log_format.conf
COPY examples/demo/ /usr/share/flashsale/demo/

# nginx needs no root: it listens on 8080 and writes only under /tmp.
USER www-data
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/flashsale_status || exit 1

# QUIT: workers finish the requests (and Redis calls) they have in flight
STOPSIGNAL SIGQUIT
CMD ["nginx", "-e", "stderr", "-c", "/etc/nginx/nginx.conf", "-g", "daemon off;"]
