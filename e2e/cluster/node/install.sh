#!/usr/bin/env bash
# Installs the Debian packages the real node needs (containerd, runc, CNI plugins, iptables) and
# the image tools (buildah, skopeo, mmdebstrap, gcc for the pause binary). Idempotent: does nothing
# when every command is already there. Needs root and the Debian mirror apt is configured with.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../common.sh
. "$here/../common.sh"
LOG_TAG=node-install

# command -> Debian package providing it
declare -A PACKAGES=(
	[runc]=runc
	[containerd]=containerd
	[ctr]=containerd
	[buildah]=buildah
	[skopeo]=skopeo
	[mmdebstrap]=mmdebstrap
	[iptables]=iptables
	[gcc]=gcc
	[ip]=iproute2
	[nsenter]=util-linux
	[conntrack]=conntrack
	[socat]=socat
)
CNI_PLUGINS=(bridge host-local loopback portmap)

missing_packages() {
	local cmd
	for cmd in "${!PACKAGES[@]}"; do
		PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || echo "${PACKAGES[$cmd]}"
	done
	local plugin
	for plugin in "${CNI_PLUGINS[@]}"; do
		[ -x "$CNI_BIN_DIR/$plugin" ] || echo containernetworking-plugins
	done
	# static libc for the pause binary
	[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -f /usr/lib/aarch64-linux-gnu/libc.a ] || echo libc6-dev
}

main() {
	local wanted
	wanted=$(missing_packages | sort -u | tr '\n' ' ')
	if [ -z "${wanted// /}" ]; then
		log "every real-node package is installed"
		return
	fi
	[ "$(id -u)" = 0 ] || die "installing $wanted needs root (apt-get)"
	log "apt-get install $wanted"
	local start=$SECONDS
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086  # word splitting of the package list is intended
	timeout 600 apt-get install -y --no-install-recommends $wanted >/tmp/llmsvc-apt.log 2>&1 || {
		timeout 300 apt-get update >>/tmp/llmsvc-apt.log 2>&1 &&
			timeout 600 apt-get install -y --no-install-recommends $wanted >>/tmp/llmsvc-apt.log 2>&1
	} || {
		cat /tmp/llmsvc-apt.log >&2
		die "apt-get install $wanted failed"
	}
	log "installed in $((SECONDS - start)) s"
}

main "$@"
