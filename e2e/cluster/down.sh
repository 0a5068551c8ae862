#!/usr/bin/env bash
# Stops and deletes the local control plane started by up.sh (its processes, data and kubeconfig).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
LOG_TAG=cluster-down
if [ "$LLMSVC_REAL_NODES" = 1 ]; then
	"$here/node/down.sh"
fi
if [ ! -d "$cluster_dir" ]; then
	log "no cluster '$LLMSVC_CLUSTER' in $KWOK_WORKDIR; nothing to do"
	exit 0
fi
stop_cluster
log "cluster '$LLMSVC_CLUSTER' deleted"
