# syntax=docker/dockerfile:1
# One image for the etcd-ts server and the operator:
#   docker run IMAGE etcd --name=m1 ...      the server (the default mode; flags alone mean etcd)
#   docker run IMAGE operator [flags]        the operator
# Build: docker build -t etcd-ts:0.1.0 .
# The layout under /app is made by scripts/assemble-image.mjs, which the Kubernetes tests also use
# (test/operator/image-layout.test.ts checks that this file and the tests' image agree).
ARG NODE_VERSION=24

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
COPY proto/package.json proto/
COPY server/package.json server/
COPY operator/package.json operator/
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY proto proto
COPY server server
COPY operator operator
COPY scripts scripts
RUN npx tsc -b server operator \
 && npm prune --omit=dev --no-audit --no-fund --ignore-scripts \
 && node scripts/assemble-image.mjs /app

FROM node:${NODE_VERSION}-bookworm-slim
RUN groupadd --gid 10001 etcd && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin etcd \
 && mkdir -p /var/lib/etcd && chown 10001:10001 /var/lib/etcd
COPY --from=build /app /app
WORKDIR /app
ENV NODE_ENV=production
USER 10001:10001
EXPOSE 2379 2380
VOLUME ["/var/lib/etcd"]
# The healthcheck asks the local member (etcd mode); Kubernetes ignores it and probes /health itself.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s CMD ["node", "/app/operator/bin/entrypoint.js", "healthcheck"]
ENTRYPOINT ["node", "/app/operator/bin/entrypoint.js"]
CMD ["etcd"]
