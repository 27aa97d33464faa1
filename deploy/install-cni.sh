#!/bin/sh
# Copies the vmnet-cni bundle onto the node, where Multus executes CNI plugins,
# then sleeps (a DaemonSet's container must keep running). Atomic: the new
# bundle goes to a fresh directory, then the plugin's link is swapped, so a
# plugin run during an upgrade sees either the old or the new bundle whole.
#   HOST_CNI_BIN  the node's CNI binary directory, mounted (default /host/opt/cni/bin)
#   HOST_OPT      where the bundle lives on the node, mounted (default /host/opt/vmnet)
#   NODE_OPT      the same directory as the node sees it (default /opt/vmnet)
set -eu
HOST_CNI_BIN=${HOST_CNI_BIN:-/host/opt/cni/bin}
HOST_OPT=${HOST_OPT:-/host/opt/vmnet}
NODE_OPT=${NODE_OPT:-/opt/vmnet}
SRC=${SRC:-/opt/vmnet-cni}
version=$(env -u CNI_COMMAND "$SRC/vmnet-cni" --version | sed 's/^vmnet-cni //')
stamp="bundle-$version-$(date +%s)"
mkdir -p "$HOST_OPT" "$HOST_CNI_BIN"
cp -a "$SRC" "$HOST_OPT/$stamp.tmp"
mv "$HOST_OPT/$stamp.tmp" "$HOST_OPT/$stamp"
ln -sfn "$NODE_OPT/$stamp/vmnet-cni" "$HOST_CNI_BIN/vmnet-cni.tmp"
mv -f "$HOST_CNI_BIN/vmnet-cni.tmp" "$HOST_CNI_BIN/vmnet-cni"
for old in "$HOST_OPT"/bundle-*; do
  [ "$old" = "$HOST_OPT/$stamp" ] || rm -rf "$old"
done
echo "vmnet-cni $version installed in $HOST_CNI_BIN (bundle $NODE_OPT/$stamp)"
if [ "${INSTALL_ONLY:-}" = 1 ]; then exit 0; fi
exec sleep infinity
