#!/usr/bin/env bash
# Starts (or reuses) the real node next to the KWOK nodes of the running local cluster:
# containerd + runc, a CNI bridge on $POD_CIDR that forwards nowhere else, the kubelet registered
# with the local kube-apiserver (fake GPUs as the extended resource nvidia.com/gpu), kube-proxy
# (iptables) for ClusterIP Services, CoreDNS for cluster.local, and the images (images.sh).
# Everything listens on 127.0.0.1 or the pod bridge's $POD_GATEWAY. Called by ../up.sh.
# Env: LLMSVC_GPUS_PER_NODE (8), LLMSVC_NODE_IMAGES=0 (skip the project images; pause only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../common.sh
. "$here/../common.sh"
# shellcheck source=lib.sh
. "$here/lib.sh"
LOG_TAG=node-up
LLMSVC_GPUS_PER_NODE=${LLMSVC_GPUS_PER_NODE:-8}

# network: the bridge with the gateway address, forwarding only between its own ports.
network() {
	if ! ip link show "$POD_BRIDGE" >/dev/null 2>&1; then
		ip link add "$POD_BRIDGE" type bridge
		ip addr add "$POD_GATEWAY/${POD_CIDR#*/}" dev "$POD_BRIDGE"
	fi
	ip link set "$POD_BRIDGE" up
	# Only packets that came in on the bridge may be forwarded (to ClusterIP backends), and never
	# anywhere but back onto the bridge.
	sysctl -qw "net.ipv4.conf.$POD_BRIDGE.forwarding=1"
	local rule
	for rule in "-i $POD_BRIDGE ! -o $POD_BRIDGE -j DROP" "! -i $POD_BRIDGE -o $POD_BRIDGE -j DROP"; do
		# shellcheck disable=SC2086  # the rule is a list of words
		iptables -C FORWARD $rule 2>/dev/null || iptables -I FORWARD 1 $rule
	done
	mkdir -p "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam"
	sed -e "s|@BRIDGE@|$POD_BRIDGE|" -e "s|@CIDR@|$POD_CIDR|" -e "s|@GATEWAY@|$POD_GATEWAY|" \
		-e "s|@IPAM_DIR@|$NODE_DIR/cni/ipam|" "$here/config/10-llmsvc.conflist" \
		>"$NODE_DIR/cni/net.d/10-llmsvc.conflist"
}

start_containerd() {
	if running containerd && [ -S "$CONTAINERD_SOCK" ]; then
		return
	fi
	mkdir -p "$NODE_DIR/run" "$NODE_DIR/containerd"
	render_config containerd.toml "$NODE_DIR/containerd.toml"
	spawn containerd containerd --config "$NODE_DIR/containerd.toml"
	wait_until 30 "containerd socket" test -S "$CONTAINERD_SOCK"
	wait_until 30 "containerd" ctr --address "$CONTAINERD_SOCK" version
}

# credentials: client certificates signed by the cluster's CA, one kubeconfig per component.
credentials() {
	local ca_hash
	ca_hash=$(sha256sum "$PKI_DIR/ca.crt" | cut -c1-16)
	if [ "$(cat "$NODE_DIR/pki/ca.hash" 2>/dev/null)" = "$ca_hash" ]; then
		return
	fi
	# A new cluster (new CA): the components of the old one must go, and the kubelet must register
	# anew (its pods of the old cluster are orphans it removes).
	local name
	for name in coredns kube-proxy kubelet api-proxy; do
		stop "$name"
	done
	rm -rf "$NODE_DIR/pki" "$NODE_DIR/kubelet/pki"
	mkdir -p "$NODE_DIR/pki"
	client_kubeconfig kubelet "system:node:$REAL_NODE_NAME" system:nodes
	client_kubeconfig kube-proxy system:kube-proxy ""
	client_kubeconfig coredns llmsvc:coredns ""
	echo "$ca_hash" >"$NODE_DIR/pki/ca.hash"
}

start_kubelet() {
	running kubelet && return
	mkdir -p "$NODE_DIR/kubelet"
	printf 'nameserver %s\nsearch %s\noptions ndots:5\n' "$POD_GATEWAY" "$CLUSTER_DOMAIN" >"$NODE_DIR/resolv.conf"
	render_config kubelet.yaml "$NODE_DIR/kubelet.yaml"
	spawn kubelet "$LLMSVC_BIN/kubelet" --config "$NODE_DIR/kubelet.yaml" \
		--kubeconfig "$NODE_DIR/pki/kubelet.kubeconfig" \
		--root-dir "$NODE_DIR/kubelet" --cert-dir "$NODE_DIR/kubelet/pki" \
		--hostname-override "$REAL_NODE_NAME" --node-ip "$POD_GATEWAY" \
		--node-labels "llmsvc.io/pool=real,llmsvc.io/real-node=true" \
		--register-with-taints "llmsvc.io/real-node=true:NoSchedule" --v 2
}

start_kube_proxy() {
	running kube-proxy && return
	render_config kube-proxy.yaml "$NODE_DIR/kube-proxy.yaml"
	spawn kube-proxy "$LLMSVC_BIN/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml" \
		--hostname-override "$REAL_NODE_NAME" --v 2
}

start_coredns() {
	running coredns && return
	kc apply --server-side --force-conflicts --field-manager=llmsvc-node-up \
		-f "$here/config/coredns-rbac.yaml" >/dev/null
	render_config Corefile "$NODE_DIR/Corefile"
	spawn coredns "$LLMSVC_BIN/coredns" -conf "$NODE_DIR/Corefile"
}

# api_proxy: pods reach the API server at the default/kubernetes Service, whose endpoint is
# $POD_GATEWAY:<secure port> (kwokctl.yaml advertises it); this relays it to 127.0.0.1.
start_api_proxy() {
	running api-proxy && return
	local port
	port=$(apiserver_port)
	spawn api-proxy socat "TCP-LISTEN:$port,bind=$POD_GATEWAY,reuseaddr,fork" "TCP:127.0.0.1:$port"
}

# gpus: the fake GPUs, patched into the node status (the kubelet keeps extended resources).
gpus() {
	local patch
	patch=$(printf '{"status":{"capacity":{"nvidia.com/gpu":"%s"},"allocatable":{"nvidia.com/gpu":"%s"}}}' \
		"$LLMSVC_GPUS_PER_NODE" "$LLMSVC_GPUS_PER_NODE")
	kc patch node "$REAL_NODE_NAME" --subresource=status --type=merge -p "$patch" >/dev/null
}

main() {
	local start=$SECONDS
	[ "$(id -u)" = 0 ] || die "the real node needs root (containerd, CNI, iptables); run as root or set LLMSVC_REAL_NODES=0"
	[[ $LLMSVC_GPUS_PER_NODE =~ ^[0-9]+$ ]] || die "LLMSVC_GPUS_PER_NODE must be a whole number, got '$LLMSVC_GPUS_PER_NODE'"
	"$here/install.sh"
	[ -x "$LLMSVC_BIN/coredns" ] || die "missing $LLMSVC_BIN/coredns: run 'make cluster-bins' (e2e/cluster/build.sh) first"
	[ -f "$PKI_DIR/ca.key" ] || die "no cluster CA in $PKI_DIR: start the cluster first (e2e/cluster/up.sh)"
	mkdir -p "$NODE_DIR/logs" "$NODE_DIR/pids"
	network
	start_containerd
	"$here/images.sh" pause
	credentials
	start_api_proxy
	start_kubelet
	start_kube_proxy
	start_coredns
	wait_until 120 "node $REAL_NODE_NAME to register" kc get node "$REAL_NODE_NAME"
	gpus
	kc wait --for=condition=Ready "node/$REAL_NODE_NAME" --timeout=120s >/dev/null ||
		die "node $REAL_NODE_NAME did not become Ready; kubelet log: $NODE_DIR/logs/kubelet.log"
	log "real node $REAL_NODE_NAME Ready in $((SECONDS - start)) s ($LLMSVC_GPUS_PER_NODE fake GPUs; logs in $NODE_DIR/logs)"
	[ "${LLMSVC_NODE_IMAGES:-1}" = 0 ] || "$here/images.sh" all
}

main "$@"
