# shellcheck shell=bash
# Shared functions of the real node's scripts (node/up.sh, node/down.sh); needs ../common.sh.
PKI_DIR=$cluster_dir/pki
PAUSE_IMAGE=localhost/llmsvc/pause:3

kc() { "$LLMSVC_BIN/kubectl" --kubeconfig "$LLMSVC_KUBECONFIG" "$@"; }

# wait_until SECONDS WHAT CMD...: retries CMD every second; dies naming WHAT after SECONDS.
wait_until() {
	local seconds=$1 what=$2 i
	shift 2
	for ((i = 0; i < seconds; i++)); do
		"$@" >/dev/null 2>&1 && return
		sleep 1
	done
	die "timed out after $seconds s waiting for $what (logs: $NODE_DIR/logs/)"
}

# start_time PID: the process's start time (field 22 of /proc/PID/stat), to recognise our own pids.
start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

# running NAME: the process that spawn NAME started is still alive (same pid and start time).
running() {
	local pid started
	read -r pid started 2>/dev/null <"$NODE_DIR/pids/$1.pid" || return 1
	[ -n "$pid" ] && [ "$(start_time "$pid")" = "$started" ]
}

# spawn NAME CMD...: starts CMD in its own session, logging to logs/NAME.log; records its pid.
spawn() {
	local name=$1
	shift
	setsid "$@" >>"$NODE_DIR/logs/$name.log" 2>&1 </dev/null 9>&- &
	local pid=$!
	sleep 0.2
	echo "$pid $(start_time "$pid")" >"$NODE_DIR/pids/$name.pid"
	running "$name" || {
		tail -20 "$NODE_DIR/logs/$name.log" >&2
		die "$name exited at once (log: $NODE_DIR/logs/$name.log)"
	}
}

# stop NAME: TERM, then KILL after 10 s, the process spawn NAME started (only that one).
stop() {
	running "$1" || {
		rm -f "$NODE_DIR/pids/$1.pid"
		return 0
	}
	local pid i
	read -r pid _ <"$NODE_DIR/pids/$1.pid"
	kill "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		running "$1" || break
		sleep 0.1
	done
	running "$1" && kill -9 "$pid" 2>/dev/null
	rm -f "$NODE_DIR/pids/$1.pid"
}

# apiserver_port: the secure port of the local API server (from the cluster's kubeconfig).
apiserver_port() {
	local server
	server=$(kc config view -o jsonpath='{.clusters[0].cluster.server}')
	echo "${server##*:}"
}

# render_config TEMPLATE OUT: config/TEMPLATE with every @VAR@ replaced by its value.
render_config() {
	local var script=()
	for var in NODE_DIR CONTAINERD_SOCK POD_CIDR POD_GATEWAY POD_BRIDGE CLUSTER_DOMAIN \
		CNI_BIN_DIR PKI_DIR REAL_NODE_NAME PAUSE_IMAGE; do
		script+=(-e "s|@$var@|${!var}|g")
	done
	sed "${script[@]}" "$here/config/$1" >"$2"
	! grep -q '@[A-Z_]*@' "$2" || die "unreplaced variable in $2: $(grep -o '@[A-Z_]*@' "$2" | head -1)"
}

# client_kubeconfig NAME USER GROUP: a client certificate for USER (in GROUP) signed by the
# cluster's CA, and pki/NAME.kubeconfig using it.
client_kubeconfig() {
	local name=$1 user=$2 group=$3 dir=$NODE_DIR/pki subject="/CN=$2"
	[ -z "$group" ] || subject="/O=$group/CN=$user"
	openssl req -new -newkey rsa:2048 -nodes -subj "$subject" \
		-keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
	openssl x509 -req -in "$dir/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
		-CAcreateserial -days 365 -out "$dir/$name.crt" 2>/dev/null
	local server
	server=$(kc config view -o jsonpath='{.clusters[0].cluster.server}')
	cat >"$dir/$name.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster: {server: "$server", certificate-authority: "$PKI_DIR/ca.crt"}
users:
  - name: $name
    user: {client-certificate: "$dir/$name.crt", client-key: "$dir/$name.key"}
contexts:
  - name: local
    context: {cluster: local, user: $name}
current-context: local
YAML
}
