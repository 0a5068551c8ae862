#!/usr/bin/env bash
# `make demo`: the whole path on this machine, no GPU or Docker needed.
#   1. start (or reuse) the local control plane: real kube-apiserver/etcd/scheduler/controllers,
#      KWOK fake nodes with 8 fake GPUs each (e2e/cluster/up.sh)
#   2. install the CRD, run the operator, apply examples/03-two-nodes.yaml and wait for Ready
#   3. show what the operator built, then the data plane: on the real kubelet node (when up.sh
#      started it), a router pod and a sim engine pod answering an OpenAI chat request through
#      the router's Service; without the real node (LLMSVC_REAL_NODES=0), the same on loopback
set -euo pipefail
cd "$(dirname "$0")/.."
. e2e/cluster/common.sh
export PATH="$PWD/.venv/bin:$LLMSVC_BIN:$PATH"
ns=llmsvc-demo
example=examples/03-two-nodes.yaml
name=llama-405b
pids=()
# The operator stops with the demo, so the demo's namespace goes too (its GPUs are freed for the
# e2e tests); LLMSVC_DEMO_KEEP=1 keeps it for a look around.
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	if [ -n "${KUBECONFIG:-}" ] && [ "${LLMSVC_DEMO_KEEP:-0}" != 1 ]; then
		kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

step "local control plane"
KUBECONFIG=$(e2e/cluster/up.sh | tail -n 1)
export KUBECONFIG
kubectl get nodes -L nvidia.com/gpu.product

step "CRD and operator"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
# (polled: `kubectl wait --for=condition=Established` fails at once while the status is still empty)
for _ in $(seq 120); do
	established=$(kubectl get crd llmservices.llmsvc.io -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')
	[ "$established" = True ] && break
	sleep 0.5
done
[ "$established" = True ] || { echo "the LLMService CRD is not Established after 60 s" >&2; exit 1; }
log=$(mktemp -t llmsvc-operator-XXXX.log)
LLMSVC_IMAGE=localhost/llmsvc/llmservice-operator:dev llmsvc operator --resync-seconds 5 --health-address "127.0.0.1:$(port)" \
	--metrics-address "127.0.0.1:$(port)" >"$log" 2>&1 &
pids+=($!)
echo "operator running (log: $log)"

step "kubectl apply -f $example"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n "$ns" -f "$example"
kubectl wait --for=condition=Ready "llmservice/$name" -n "$ns" --timeout=180s
kubectl get llmservices,statefulsets,services,pods -n "$ns"
kubectl get llmservice "$name" -n "$ns" -o jsonpath='{.status.conditions}' | python3 -m json.tool

if [ "$LLMSVC_REAL_NODES" = 1 ]; then
	step "real pods on $REAL_NODE_NAME: a sim engine (the vllm CLI of the test image) behind the router pod"
	models=$(mktemp -d)
	mkdir -p "$models/tiny" && head -c 4096 /dev/zero >"$models/tiny/model.safetensors"
	mport=$(port)
	python3 -m http.server --bind "$POD_GATEWAY" --directory "$models" "$mport" >/dev/null 2>&1 &
	pids+=($!)
	placement='{"nodeSelector":{"llmsvc.io/pool":"real"},"tolerations":[{"key":"llmsvc.io/real-node","operator":"Exists","effect":"NoSchedule"}]}'
	kubectl apply -n "$ns" -f - <<YAML
apiVersion: llmsvc.io/v1alpha1
kind: LLMService
metadata: {name: real}
spec:
  model: {uri: "http://$POD_GATEWAY:$mport/tiny/model.safetensors", servedName: demo}
  # the real node has this machine's CPUs, far below the default model-server requests
  engine: {image: "localhost/llmsvc/vllm-sim:dev", maxModelLen: 2048, resources: {requests: {cpu: 100m, memory: 128Mi}}}
  parallelism: {tensor: 1, pipeline: 1, gpusPerNode: 1}
  startup: {timeoutSeconds: 120}
  scheduling: $placement
  router: {podTemplate: {spec: $placement}}
YAML
	kubectl wait --for=condition=Ready llmservice/real -n "$ns" --timeout=240s || {
		kubectl get pods -n "$ns" -o wide
		kubectl get llmservice real -n "$ns" -o jsonpath='{.status.conditions}' | python3 -m json.tool
		exit 1
	}
	kubectl rollout status deployment/real-router -n "$ns" --timeout=120s
	kubectl get pods -n "$ns" -o wide --field-selector "spec.nodeName=$REAL_NODE_NAME"
	fport=$(port)
	kubectl port-forward -n "$ns" --address 127.0.0.1 svc/real "$fport:8000" >/dev/null 2>&1 &
	pids+=($!)
	for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$fport/health" >/dev/null 2>&1 && break; sleep 0.2; done
	echo "POST /v1/chat/completions via kubectl port-forward svc/real (the router pod, then the engine pod):"
	curl -fsS "http://127.0.0.1:$fport/v1/chat/completions" -H 'content-type: application/json' \
		-d '{"model":"demo","messages":[{"role":"user","content":"Hello!"}],"max_tokens":12}' |
		python3 -m json.tool
	step "done"
	echo "The cluster keeps running (KUBECONFIG=$KUBECONFIG); the demo namespace is removed"
	echo "(LLMSVC_DEMO_KEEP=1 make demo keeps it). Stop the cluster with: make cluster-down"
	exit 0
fi

step "data plane on loopback: router in front of two vLLM simulators"
backends=()
for i in 1 2; do
	p=$(port)
	llmsvc sim --port "$p" --model demo --host 127.0.0.1 >/dev/null 2>&1 &
	pids+=($!)
	backends+=(--backend "http://127.0.0.1:$p")
done
rp=$(port)
llmsvc router "${backends[@]}" --host 127.0.0.1 --port "$rp" --policy prefix-aware >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$rp/health" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$rp/v1/chat/completions" -H 'content-type: application/json' \
	-d '{"model":"demo","messages":[{"role":"user","content":"Hello!"}],"max_tokens":12}' |
	python3 -m json.tool

step "done"
echo "The cluster keeps running (KUBECONFIG=$KUBECONFIG); the demo namespace is removed"
echo "(LLMSVC_DEMO_KEEP=1 make demo keeps it). Stop the cluster with: make cluster-down"
