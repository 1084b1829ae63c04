#!/bin/sh
# Installs the ambit-cni plugin (cni/ambit-cni.cc) on a node and chains it into the node's CNI
# configuration. The node-agent DaemonSet runs it as an init container (daemonset/ambit/node-agent.yaml),
# as root, with the host's CNI directories mounted; the image has it at /usr/local/bin/ambit-cni-install.
#
# What it does, in order:
#  1. Copies the plugin binary into the host's CNI bin dir, atomically (copy to a hidden name, then
#     rename), so that the container runtime never runs a half-written file.
#  2. Waits for the node's primary CNI configuration: the runtime (containerd, CRI-O) uses the first
#     *.conf, *.conflist or *.json file of the config dir in lexical order, and the cluster's network
#     plugin (Calico, Cilium, flannel, kindnet…) may write it only after this pod starts.
#  3. Appends {"type": "ambit-cni", "socket": …, "failPolicy": …} to that file's plugin list, so the
#     plugin runs after the network plugin (it needs the pod's IPs from the previous result). An entry
#     already there (this pod restarted, or an upgrade) is replaced in place: running twice gives the
#     same file, and an unchanged file is not rewritten (the runtime reloads on every write). A single
#     plugin config (.conf, .json) is first turned into a list: written as <name>.conflist, and the
#     old file is removed so that the runtime reads the list.
#  4. Writes the new config atomically too (a hidden temporary name with no CNI extension, then rename).
#
# Nothing is removed when the agent stops or is uninstalled: the plugin fails open by default, so with
# no agent a pod starts uncaptured (and is captured by the agent's scan when one starts again). To
# remove Ambit from a node, delete /opt/cni/bin/ambit-cni and the ambit-cni entry of the config list.
#
# Settings (environment):
#   CNI_BIN_DIR              host CNI bin dir as mounted here     (default /host/opt/cni/bin)
#   CNI_NET_DIR              host CNI config dir as mounted here  (default /host/etc/cni/net.d)
#   AMBIT_CNI_BINARY         the plugin in this image             (default /app/build/Release/ambit-cni)
#   AMBIT_CNI_SOCKET         the agent's socket, as a path on the HOST, where the runtime runs the plugin
#                            (default /var/run/ambit/cni.sock, the agent's AMBIT_CNI_SOCKET default)
#   AMBIT_CNI_FAIL_POLICY    open | closed (see cni/ambit-cni.cc) (default open)
#   AMBIT_CNI_WAIT_SECONDS   how long step 2 waits before failing (default 300; the kubelet then
#                            restarts this init container with a back-off)
# Needs: sh, jq, cp, mv, cmp.
set -eu
# Byte order for the glob below, as Go's sort.Strings in libcni.
export LC_ALL=C

CNI_BIN_DIR="${CNI_BIN_DIR:-/host/opt/cni/bin}"
CNI_NET_DIR="${CNI_NET_DIR:-/host/etc/cni/net.d}"
AMBIT_CNI_BINARY="${AMBIT_CNI_BINARY:-/app/build/Release/ambit-cni}"
AMBIT_CNI_SOCKET="${AMBIT_CNI_SOCKET:-/var/run/ambit/cni.sock}"
AMBIT_CNI_FAIL_POLICY="${AMBIT_CNI_FAIL_POLICY:-open}"
AMBIT_CNI_WAIT_SECONDS="${AMBIT_CNI_WAIT_SECONDS:-300}"

log() { echo "ambit-cni-install: $*" >&2; }
die() {
  log "$*"
  exit 1
}

case "$AMBIT_CNI_FAIL_POLICY" in
  open | closed) ;;
  *) die "AMBIT_CNI_FAIL_POLICY is \"$AMBIT_CNI_FAIL_POLICY\": use open or closed" ;;
esac
case "$AMBIT_CNI_SOCKET" in
  /*) ;;
  *) die "AMBIT_CNI_SOCKET is \"$AMBIT_CNI_SOCKET\": use an absolute path" ;;
esac
case "$AMBIT_CNI_WAIT_SECONDS" in
  '' | *[!0-9]*) die "AMBIT_CNI_WAIT_SECONDS is \"$AMBIT_CNI_WAIT_SECONDS\": use a whole number of seconds" ;;
esac
command -v jq >/dev/null || die "jq is not installed in this image"
[ -f "$AMBIT_CNI_BINARY" ] || die "$AMBIT_CNI_BINARY does not exist: was the image built with npm ci on Linux?"
[ -d "$CNI_BIN_DIR" ] || die "$CNI_BIN_DIR does not exist: is the host's CNI bin dir mounted there?"
[ -d "$CNI_NET_DIR" ] || die "$CNI_NET_DIR does not exist: is the host's CNI config dir mounted there?"

# 1. The binary.
tmp_bin="$CNI_BIN_DIR/.ambit-cni.tmp"
cp "$AMBIT_CNI_BINARY" "$tmp_bin"
chmod 0755 "$tmp_bin"
mv -f "$tmp_bin" "$CNI_BIN_DIR/ambit-cni"
log "installed $CNI_BIN_DIR/ambit-cni"

# 2. The primary config: the first file by name with a CNI extension, as libcni's ConfFiles sorts them.
primary_conf() {
  for f in "$CNI_NET_DIR"/*; do
    case "$f" in
      *.conf | *.conflist | *.json) [ -f "$f" ] && echo "$f" && return 0 ;;
    esac
  done
  return 1
}
waited=0
until conf="$(primary_conf)"; do
  if [ "$waited" -ge "$AMBIT_CNI_WAIT_SECONDS" ]; then
    die "no CNI config (*.conf, *.conflist, *.json) in $CNI_NET_DIR after ${waited}s: is the cluster's network plugin installed?"
  fi
  if [ $((waited % 30)) -eq 0 ]; then log "waiting for the network plugin's config in $CNI_NET_DIR"; fi
  sleep 2
  waited=$((waited + 2))
done

# 3. The chained entry. A list keeps its other plugins in order; ours goes last, replacing any earlier one.
entry="$(jq -cn --arg socket "$AMBIT_CNI_SOCKET" --arg policy "$AMBIT_CNI_FAIL_POLICY" \
  '{type: "ambit-cni", socket: $socket, failPolicy: $policy}')"
case "$conf" in
  *.conflist)
    target="$conf"
    # shellcheck disable=SC2016 # $entry is jq's variable, not the shell's
    filter='if (.plugins | type) != "array" then error("it has no plugins list") else . end
      | .plugins = ([.plugins[] | select(.type != "ambit-cni")] + [$entry])'
    ;;
  *)
    # A single plugin: the list takes its cniVersion and name, and the plugin itself less those. Chaining
    # (prevResult) needs a list version of 0.3.0 at least: 0.3.1 when the plugin names none.
    target="${conf%.*}.conflist"
    # shellcheck disable=SC2016 # $entry is jq's variable, not the shell's
    filter='if (.type | type) != "string" then error("it names no plugin type") else . end
      | {cniVersion: (.cniVersion // "0.3.1"), name: (.name // "k8s-pod-network"),
         plugins: [del(.cniVersion, .name), $entry]}'
    ;;
esac
tmp_conf="$CNI_NET_DIR/.$(basename "$target").ambit-tmp"
if ! jq --argjson entry "$entry" "$filter" "$conf" >"$tmp_conf"; then
  rm -f "$tmp_conf"
  die "cannot chain ambit-cni into $conf: is it valid JSON in CNI's format?"
fi

# 4. The write, only when something changed.
if [ "$target" = "$conf" ] && cmp -s "$tmp_conf" "$conf"; then
  rm -f "$tmp_conf"
  log "$conf already chains ambit-cni"
else
  chmod 0644 "$tmp_conf"
  mv -f "$tmp_conf" "$target"
  if [ "$target" != "$conf" ]; then rm -f "$conf"; fi
  log "chained ambit-cni into $target (socket $AMBIT_CNI_SOCKET, failPolicy $AMBIT_CNI_FAIL_POLICY)"
fi
