# syntax=docker/dockerfile:1
# The one Ambit image (DESIGN.md §1): `ambit controller`, `ambit ztunnel`, `ambit waypoint` (the
# entrypoint is the CLI; a manifest's args pick the program), plus the CNI plugin and its installer for
# the node agent's init container (daemonset/cni-install.sh).
#
#   docker build -t ambit:0.1.0 .
#
# Runs as uid 1000 (the base image's `node` user); the node-agent DaemonSet overrides that with root
# and three capabilities, which it needs to enter pods' network namespaces.

ARG NODE_IMAGE=node:24-slim

# ---- build: the netns addon and the CNI plugin (node-gyp), and the production node_modules.
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# node-gyp compiles against this image's own Node headers instead of downloading them. The addon uses
# Node-API only, so the build serves any Node version.
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json binding.gyp ./
COPY src/core/netns/addon.cc src/core/netns/addon.cc
COPY cni/ cni/
# `npm ci` runs the package's install script, `node-gyp rebuild`, which writes
# build/Release/ambit_netns.node and build/Release/ambit-cni. --omit=dev leaves the devDependencies
# out instead of pruning them afterwards; among them is the `node` package, which pins Node 24 for npm
# scripts on developer machines and CI: here the base image's Node 24 is the runtime, and a second
# Node binary in node_modules/.bin would only take space (and shadow it in npm scripts).
RUN npm ci --omit=dev --no-audit --no-fund \
  && test -f build/Release/ambit_netns.node \
  && test -x build/Release/ambit-cni

# ---- runtime
FROM ${NODE_IMAGE}
# The node agent writes each captured pod's rules and policy route inside the pod's network namespace
# with nsenter (util-linux), iptables-restore/ip6tables-restore and ip (iproute2); Debian's iptables
# is its nft variant, which needs no lock file on the read-only root filesystem. jq: the CNI installer.
RUN apt-get update \
  && apt-get install -y --no-install-recommends util-linux iptables iproute2 jq \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/build/Release/ambit_netns.node /app/build/Release/ambit-cni build/Release/
COPY package.json ./
COPY src src
# The objects the controller stamps out for each waypoint Gateway (AMBIT_WAYPOINT_TEMPLATE).
COPY waypoint/template.yaml waypoint/template.yaml
# And for each Gateway API Gateway of class ambit (an ingress gateway; beside the template above).
COPY waypoint/gateway-template.yaml waypoint/gateway-template.yaml
COPY --chmod=0755 daemonset/cni-install.sh /usr/local/bin/ambit-cni-install
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 1000:1000
EXPOSE 15008 15012 15014 15020 15021
ENTRYPOINT ["node", "src/cli/main.ts"]
CMD ["--help"]
