#!/usr/bin/env bash
# Stops the real node: its pods' containers, CoreDNS, kube-proxy (and its iptables rules), the
# kubelet, the API relay and containerd; removes the bridge and the pod state. Keeps the images
# (containerd's content store and $IMAGE_DIR) so the next start imports nothing. Called by ../down.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../common.sh
. "$here/../common.sh"
# shellcheck source=lib.sh
. "$here/lib.sh"
LOG_TAG=node-down

kctr() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# netns_of ID: the network namespace path in the spec of container ID (pod sandboxes have one).
netns_of() {
	kctr containers info "$1" 2>/dev/null | python3 -c '
import json, sys
spec = json.load(sys.stdin).get("Spec") or {}
for ns in (spec.get("linux") or {}).get("namespaces") or []:
    if ns.get("type") == "network" and ns.get("path"):
        print(ns["path"])'
}

# remove_containers: kill every task of the k8s.io namespace, delete the containers and the
# network namespaces of their sandboxes.
remove_containers() {
	[ -S "$CONTAINERD_SOCK" ] && running containerd || return 0
	local id netns=()
	for id in $(kctr containers ls -q 2>/dev/null); do
		mapfile -t -O "${#netns[@]}" netns < <(netns_of "$id")
		kctr tasks kill --signal SIGKILL "$id" >/dev/null 2>&1 || true
	done
	sleep 1
	for id in $(kctr containers ls -q 2>/dev/null); do
		kctr tasks delete --force "$id" >/dev/null 2>&1 || true
		kctr containers delete "$id" >/dev/null 2>&1 || true
	done
	local path
	for path in "${netns[@]}"; do
		umount "$path" 2>/dev/null || true
		rm -f "$path"
	done
}

# unmount_under DIR: unmounts what the kubelet and containerd mounted below DIR (deepest first).
unmount_under() {
	local mnt
	for mnt in $(awk -v d="$1" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
		umount -l "$mnt" 2>/dev/null || true
	done
}

# kube_proxy_cleanup: removes the Service rules kube-proxy wrote into iptables.
kube_proxy_cleanup() {
	[ -x "$LLMSVC_BIN/kube-proxy" ] || return 0
	"$LLMSVC_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || log "kube-proxy --cleanup reported errors (ignored)"
}

main() {
	[ -d "$NODE_DIR" ] || {
		log "no real node in $NODE_DIR; nothing to do"
		return
	}
	local name
	for name in coredns kube-proxy kubelet api-proxy; do
		stop "$name"
	done
	kube_proxy_cleanup
	remove_containers
	stop containerd
	unmount_under "$NODE_DIR/kubelet"
	unmount_under "$NODE_DIR/containerd/state"
	rm -rf "$NODE_DIR/kubelet" "$NODE_DIR/cni/ipam" "$NODE_DIR/containerd/state" "$NODE_DIR/pki" "$NODE_DIR/run"
	local rule
	for rule in "-i $POD_BRIDGE ! -o $POD_BRIDGE -j DROP" "! -i $POD_BRIDGE -o $POD_BRIDGE -j DROP"; do
		# shellcheck disable=SC2086  # the rule is a list of words
		while iptables -D FORWARD $rule 2>/dev/null; do :; done
	done
	ip link del "$POD_BRIDGE" 2>/dev/null || true
	log "real node $REAL_NODE_NAME stopped (images kept in $NODE_DIR/containerd/root)"
}

main "$@"
