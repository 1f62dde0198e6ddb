# syntax=docker/dockerfile:1
# Stage 1: the embedded database (FerretDB 1.24 on SQLite), for running without MONGODB_URI.
FROM golang:1.24-bookworm AS ferretdb
WORKDIR /src/tools/ferretdb
COPY tools/ferretdb/ ./
RUN CGO_ENABLED=0 go build -trimpath -modfile="$(sh patch-ferretdb.sh /tmp/ferretdb-build)" -o /out/ferretdb .

# Stage 2: compile TypeScript.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts

# Stage 3: the runtime image, non-root.
FROM node:20-bookworm-slim
ENV NODE_ENV=production PORT=8080 DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY scripts ./scripts
COPY tools/ferretdb ./tools/ferretdb
COPY ig ./ig
COPY --from=ferretdb /out/ferretdb ./.tools/bin/ferretdb
# The binary comes from the Go stage: mark it as built from these sources (scripts/ferretdb.mjs).
RUN node scripts/ferretdb.mjs --stamp \
 && mkdir -p /data && chown -R node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD node -e "require('http').get('http://127.0.0.1:'+(process.env.PORT||8080)+'/readyz',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"
CMD ["node", "dist/server.js"]
