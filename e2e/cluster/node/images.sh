#!/usr/bin/env bash
# Builds the real node's images without any registry and imports them into containerd (k8s.io):
#   localhost/llmsvc/pause:3                      the pod sandbox: a static C program (images/pause.c)
#   localhost/llmsvc/base:bookworm                Debian bookworm + python3 + pip, from mmdebstrap
#   localhost/llmsvc/llmservice-operator:dev      the project's Dockerfile, FROM the local base
#   localhost/llmsvc/vllm-sim:dev                 the test engine: the project image + a `vllm` CLI
# Each is keyed by a hash of its inputs ($IMAGE_DIR/NAME.hash): a warm run rebuilds nothing.
# Usage: images.sh [pause|base|all] (default all). pause and all need containerd running
# (node/up.sh starts it); base only makes the base image in buildah's storage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../common.sh
. "$here/../common.sh"
repo=$(cd "$here/../../.." && pwd)
LOG_TAG=node-images

PAUSE_IMAGE=localhost/llmsvc/pause:3
BASE_IMAGE=localhost/llmsvc/base:bookworm
OPERATOR_IMAGE=localhost/llmsvc/llmservice-operator:dev
ENGINE_IMAGE=localhost/llmsvc/vllm-sim:dev
BASE_PACKAGES=python3,python3-pip,python-is-python3,ca-certificates
# pip may install into the system Python, as in the python:*-slim images the Dockerfile expects.
BASE_HOOK='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED'
BUILDAH_DIR=$LLMSVC_CACHE/buildah

bah() { buildah --root "$BUILDAH_DIR/root" --runroot "$BUILDAH_DIR/run" --storage-driver overlay "$@"; }
kctr() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# hash_of TEXT FILES...: sha256 of TEXT and the names and contents of FILES.
hash_of() {
	local text=$1
	shift
	{
		echo "$text"
		[ $# -eq 0 ] || (cd "$repo" && sha256sum "$@")
	} | sha256sum | cut -c1-16
}

# project_files: the build context the Dockerfile sees (.dockerignore keeps only these).
project_files() {
	(cd "$repo" && find Dockerfile .dockerignore pyproject.toml README.md operator -type f \
		! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' | LC_ALL=C sort)
}

# fresh NAME HASH: containerd holds NAME built from inputs with this HASH.
fresh() {
	[ "$(cat "$IMAGE_DIR/${1//[:\/]/_}.hash" 2>/dev/null)" = "$2" ] || return 1
	local images # captured first: grep -q closing the pipe early would fail it under pipefail
	images=$(kctr images ls -q 2>/dev/null) || return 1
	grep -qxF "$1" <<<"$images"
}

# import NAME HASH: buildah image NAME -> docker archive -> containerd; records HASH.
import() {
	local name=$1 hash=$2 key=${1//[:\/]/_} start=$SECONDS
	rm -f "$IMAGE_DIR/$key".*.tar
	bah push --quiet "$name" "docker-archive:$IMAGE_DIR/$key.$hash.tar:$name" >/dev/null
	kctr images import --snapshotter overlayfs "$IMAGE_DIR/$key.$hash.tar" >/dev/null
	echo "$hash" >"$IMAGE_DIR/$key.hash"
	log "imported $name into containerd in $((SECONDS - start)) s"
}

build_pause() {
	local hash
	hash=$(hash_of "$PAUSE_IMAGE" e2e/cluster/node/images/pause.c)
	fresh "$PAUSE_IMAGE" "$hash" && return
	local tmp ctr
	tmp=$(mktemp -d)
	gcc -static -Os -s -o "$tmp/pause" "$here/images/pause.c"
	ctr=$(bah from scratch)
	bah copy "$ctr" "$tmp/pause" /pause >/dev/null
	bah config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
	bah commit --quiet --rm "$ctr" "$PAUSE_IMAGE" >/dev/null
	rm -rf "$tmp"
	import "$PAUSE_IMAGE" "$hash"
}

# build_base: Debian bookworm minbase + python3/pip from the Debian mirror (no registry).
build_base() {
	local hash
	hash=$(hash_of "$BASE_IMAGE $BASE_PACKAGES $BASE_HOOK")
	if [ "$(cat "$IMAGE_DIR/base.hash" 2>/dev/null)" = "$hash" ] && bah inspect "$BASE_IMAGE" >/dev/null 2>&1; then
		return
	fi
	local rootfs=$IMAGE_DIR/base-rootfs.$hash.tar start=$SECONDS
	if [ ! -f "$rootfs" ]; then
		log "mmdebstrap bookworm ($BASE_PACKAGES); about 2 min"
		rm -f "$IMAGE_DIR"/base-rootfs.*.tar
		timeout 900 mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
			--customize-hook="$BASE_HOOK" \
			bookworm "$IMAGE_DIR/base-rootfs.part.tar" >"$IMAGE_DIR/mmdebstrap.log" 2>&1 ||
			{ cat "$IMAGE_DIR/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
		mv "$IMAGE_DIR/base-rootfs.part.tar" "$rootfs"
	fi
	local ctr
	ctr=$(bah from scratch)
	bah add "$ctr" "$rootfs" / >/dev/null
	bah config --env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--cmd python3 "$ctr"
	bah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
	echo "$hash" >"$IMAGE_DIR/base.hash"
	log "base image $BASE_IMAGE in $((SECONDS - start)) s"
}

# bud NAME HASH FILE ARGS...: buildah build of FILE (context: the repo) into NAME, then import.
bud() {
	local name=$1 hash=$2 file=$3 start=$SECONDS
	shift 3
	log "building $name from ${file#"$repo"/}"
	# --network host: pip reaches PyPI as this machine does; the host's CA bundle is mounted
	# read-only for the build only. No --layers: buildah 1.28 reuses a cached
	# `RUN --mount=type=bind,from=build` step although the stage it mounts has changed, which
	# shipped stale code; the hash of the inputs already skips unchanged builds.
	if ! bah bud --quiet --runtime runc --pull=never --network host \
		--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
		"$@" -f "$file" -t "$name" "$repo" >"$IMAGE_DIR/build.log" 2>&1; then
		cat "$IMAGE_DIR/build.log" >&2
		die "buildah bud of $name failed"
	fi
	log "built $name in $((SECONDS - start)) s"
	import "$name" "$hash"
}

build_project() {
	local files base_hash hash
	mapfile -t files < <(project_files)
	base_hash=$(cat "$IMAGE_DIR/base.hash")
	hash=$(hash_of "$OPERATOR_IMAGE $base_hash" "${files[@]}")
	fresh "$OPERATOR_IMAGE" "$hash" ||
		bud "$OPERATOR_IMAGE" "$hash" "$repo/Dockerfile" --build-arg "PYTHON_IMAGE=$BASE_IMAGE"
	local engine_hash
	engine_hash=$(hash_of "$ENGINE_IMAGE $hash" e2e/cluster/node/images/engine.Dockerfile)
	fresh "$ENGINE_IMAGE" "$engine_hash" ||
		bud "$ENGINE_IMAGE" "$engine_hash" "$here/images/engine.Dockerfile" --build-arg "BASE_IMAGE=$OPERATOR_IMAGE"
}

main() {
	local what=${1:-all} start=$SECONDS
	mkdir -p "$IMAGE_DIR" "$BUILDAH_DIR"
	case $what in
	base) build_base ;;
	pause | all)
		[ -S "$CONTAINERD_SOCK" ] || die "containerd is not running ($CONTAINERD_SOCK); start the node with node/up.sh"
		build_pause
		[ "$what" = pause ] || { build_base && build_project; }
		;;
	*) die "usage: images.sh [pause|base|all], got '$what'" ;;
	esac
	log "images ready in $((SECONDS - start)) s"
}

main "$@"
