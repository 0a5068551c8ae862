#!/usr/bin/env bash
# Starts (or reuses) the local control plane: kwokctl --runtime binary with every binary from the
# cache, all on 127.0.0.1, then applies the fake nodes. Prints the kubeconfig path on its last line.
# Env: LLMSVC_GPU_NODES (4), LLMSVC_GPUS_PER_NODE (8), LLMSVC_CPU_NODES (1), LLMSVC_CACHE,
# LLMSVC_FRESH=1 (recreate even a healthy cluster: no state left over from earlier runs),
# LLMSVC_REAL_NODES (1 for the default cluster: also start the real kubelet node, node/up.sh).
# LLMSVC_GANG (1: workload-aware scheduling on, the default; 0: off, the negative control).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
export KWOK_WORKDIR PATH="$LLMSVC_BIN:$PATH"
LLMSVC_GPU_NODES=${LLMSVC_GPU_NODES:-4}
LLMSVC_GPUS_PER_NODE=${LLMSVC_GPUS_PER_NODE:-8}
LLMSVC_CPU_NODES=${LLMSVC_CPU_NODES:-1}
LLMSVC_GANG=${LLMSVC_GANG:-1}
LOG_TAG=cluster-up
# Workload-aware scheduling of Kubernetes 1.37 (kube_features.go): GenericWorkload (beta, off by
# default) serves the Workload/PodGroup API and enables the scheduler's GangScheduling plugin;
# TopologyAwareWorkloadScheduling (alpha) keeps PodGroup.spec.schedulingConstraints.topology and
# enables topology-aware placement. Beta API versions are off by default, hence the runtime-config.
GANG_FEATURE_GATES=GenericWorkload=true,TopologyAwareWorkloadScheduling=true
GANG_RUNTIME_CONFIG=scheduling.k8s.io/v1beta1=true

check_inputs() {
	local var
	for var in LLMSVC_GPU_NODES LLMSVC_GPUS_PER_NODE LLMSVC_CPU_NODES; do
		[[ ${!var} =~ ^[0-9]+$ ]] || die "$var must be a whole number (a node or GPU count), got '${!var}'"
	done
	[[ $LLMSVC_REAL_NODES =~ ^[01]$ ]] || die "LLMSVC_REAL_NODES must be 0 or 1, got '$LLMSVC_REAL_NODES'"
	[[ $LLMSVC_GANG =~ ^[01]$ ]] || die "LLMSVC_GANG must be 1 (gang scheduling on) or 0 (off), got '$LLMSVC_GANG'"
	local bin
	for bin in kube-apiserver kube-controller-manager kube-scheduler etcd kwok kwokctl kubectl; do
		[ -x "$LLMSVC_BIN/$bin" ] || die "missing $LLMSVC_BIN/$bin: run 'make cluster-bins' (e2e/cluster/build.sh) first"
	done
}

kc() { kubectl --kubeconfig "$LLMSVC_KUBECONFIG" "$@"; }

# gang_served: whether the running apiserver serves the PodGroup API (LLMSVC_GANG=1 wants it).
gang_served() {
	kc get --raw /apis/scheduling.k8s.io/v1beta1 --request-timeout=5s 2>/dev/null | grep -q '"podgroups"'
}

# gang_flags: kwokctl flags that turn workload-aware scheduling on in every component.
gang_flags() {
	[ "$LLMSVC_GANG" = 1 ] || return 0
	printf '%s\n' --kube-feature-gates "$GANG_FEATURE_GATES" --kube-runtime-config "$GANG_RUNTIME_CONFIG"
}

# healthy: the apiserver answers /readyz, every component process recorded by kwokctl is alive,
# and gang scheduling is on or off as LLMSVC_GANG asks.
healthy() {
	[ -f "$LLMSVC_KUBECONFIG" ] && [ -d "$cluster_dir/pids" ] || return 1
	local pidfile
	for pidfile in "$cluster_dir"/pids/*.pid; do
		[ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null || return 1
	done
	kc get --raw /readyz --request-timeout=5s >/dev/null 2>&1 &&
		kc get --raw /version --request-timeout=5s 2>/dev/null | grep -qF "\"gitVersion\": \"$K8S_VERSION\"" || return 1
	if gang_served; then [ "$LLMSVC_GANG" = 1 ]; else [ "$LLMSVC_GANG" = 0 ]; fi || return 1
	service_range_current
}

# service_range_current: the cluster serves Services from $SERVICE_CIDR (a cluster made before
# the range was widened is full at 253 Services and is recreated).
service_range_current() {
	[ "$(kc get service kubernetes -n default -o 'jsonpath={.spec.clusterIP}' --request-timeout=5s 2>/dev/null)" = "$API_SERVICE_IP" ]
}

create_cluster() {
	local out gang
	out=$(mktemp)
	mapfile -t gang < <(gang_flags)
	log "creating cluster '$LLMSVC_CLUSTER' (kwokctl $KWOK_VERSION, Kubernetes $K8S_VERSION, gang scheduling $LLMSVC_GANG, workdir $KWOK_WORKDIR)"
	local config=$LLMSVC_CACHE/kwokctl-$LLMSVC_CLUSTER.yaml
	sed "s|@PKI_DIR@|$cluster_dir/pki|g" "$here/kwokctl.yaml" >"$config"
	if ! kwokctl --name "$LLMSVC_CLUSTER" --config "$config" create cluster \
		--runtime binary "${gang[@]}" \
		--kubeconfig "$LLMSVC_KUBECONFIG" \
		--kube-apiserver-binary "$LLMSVC_BIN/kube-apiserver" \
		--kube-controller-manager-binary "$LLMSVC_BIN/kube-controller-manager" \
		--kube-scheduler-binary "$LLMSVC_BIN/kube-scheduler" \
		--etcd-binary "$LLMSVC_BIN/etcd" \
		--kwok-controller-binary "$LLMSVC_BIN/kwok" \
		--wait 2m >"$out" 2>&1 9>&-; then # 9>&-: the daemons must not inherit the lock
		cat "$out" >&2
		die "kwokctl create cluster failed; component logs: $cluster_dir/logs/"
	fi
	if grep -qi 'download' "$out"; then
		cat "$out" >&2
		die "kwokctl tried to download something; every binary must be a local file"
	fi
	rm -f "$out"
}

# render_node TEMPLATE NAME: one node manifest from nodes/TEMPLATE.yaml.
render_node() {
	sed -e "s/NODE_NAME/$2/g" -e "s/GPU_COUNT/$LLMSVC_GPUS_PER_NODE/g" "$here/nodes/$1.yaml"
	echo ---
}

# node_manifests POOL COUNT: manifests of nodes POOL-node-0 .. POOL-node-(COUNT-1).
node_manifests() {
	local i
	for ((i = 0; i < $2; i++)); do
		render_node "$1-node" "$1-node-$i"
	done
}

# prune_nodes POOL COUNT: deletes nodes of POOL beyond the wanted count (a smaller LLMSVC_*_NODES).
prune_nodes() {
	local name index
	for name in $(kc get nodes -l "llmsvc.io/pool=$1" -o name); do
		index=${name##*-}
		if ! [[ $index =~ ^[0-9]+$ ]] || ((index >= $2)); then
			kc delete "$name" --wait=false >/dev/null
		fi
	done
}

# sync_nodes: the fake nodes exist with the wanted capacity (server-side apply, status included).
sync_nodes() {
	local manifests apply=(apply --server-side --force-conflicts --field-manager=llmsvc-cluster-up)
	manifests=$(node_manifests gpu "$LLMSVC_GPU_NODES"; node_manifests cpu "$LLMSVC_CPU_NODES")
	if [ -n "$manifests" ]; then
		kc "${apply[@]}" -f - <<<"$manifests" >/dev/null
		kc "${apply[@]}" --subresource=status -f - <<<"$manifests" >/dev/null
	fi
	prune_nodes gpu "$LLMSVC_GPU_NODES"
	prune_nodes cpu "$LLMSVC_CPU_NODES"
}

main() {
	local start=$SECONDS
	check_inputs
	mkdir -p "$KWOK_WORKDIR" "$(dirname "$LLMSVC_KUBECONFIG")"
	# One up.sh at a time (parallel test runs share the cluster).
	exec 9>"$LLMSVC_CACHE/up.lock"
	flock -w 900 9 || die "another up.sh still holds $LLMSVC_CACHE/up.lock after 900 s"
	if [ "${LLMSVC_FRESH:-0}" != 1 ] && healthy; then
		log "reusing the healthy cluster '$LLMSVC_CLUSTER'"
	else
		if [ -d "$cluster_dir" ]; then
			log "deleting the old cluster '$LLMSVC_CLUSTER' (stale, or LLMSVC_FRESH=1)"
			stop_cluster
		fi
		create_cluster
	fi
	sync_nodes
	local ours='llmsvc.io/pool in (gpu,cpu)'
	((LLMSVC_GPU_NODES + LLMSVC_CPU_NODES == 0)) ||
		kc wait --for=condition=Ready nodes -l "$ours" --timeout=60s >/dev/null ||
		die "fake nodes did not become Ready; kwok log: $cluster_dir/logs/kwok-controller.log"
	if [ "$LLMSVC_REAL_NODES" = 1 ]; then
		"$here/node/up.sh" 9>&-
	else
		log "no real node (LLMSVC_REAL_NODES=0)"
	fi
	kc get nodes -L llmsvc.io/pool,nvidia.com/gpu.product >&2
	log "cluster '$LLMSVC_CLUSTER' ready in $((SECONDS - start)) s ($LLMSVC_GPU_NODES GPU nodes x $LLMSVC_GPUS_PER_NODE GPUs, $LLMSVC_CPU_NODES CPU nodes)"
	log "use it with: export KUBECONFIG=$LLMSVC_KUBECONFIG"
	echo "$LLMSVC_KUBECONFIG"
}

main "$@"
