#!/usr/bin/env bash
# DEMO_CLUSTER=kubernetes make demo: make demo's story on the real-cluster lab (lab/kube: etcd,
# apiserver, kubelet, containerd, kube-proxy on two nodes; kube-router v2.1.0 with K3s 1.33's
# ICMP accepts against the API server). flowlens runs as its DaemonSet (deploy/base, with
# hack/demo-kube's patch: the agents judge by the git folder, a ConfigMap). The drift goes
# through the API server: `kubectl apply` of an edited NetworkPolicy, which kube-router enforces
# while git keeps the original, and a change in git that is not applied. Flows come from
# `flowlens observe -P`, the drift from `flowlens status -P`, the alert from Debian's prometheus
# scraping the agents; a per-namespace summary at the end; `flowlens-lab down` removes it all.
# DEMO_PHASE (default 20s), DEMO_LOG, DEMO_KEEP_FLOWS: as for hack/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces, iptables, BPF, containerd)"; exit 1; }
# The real-cluster lab's Debian packages, as `make deps-kubernetes` installs them.
missing=""
for pair in $(sed -n 's/^DEB_CMDS_KUBE := //p; s/^DEB_FILES_KUBE := //p' Makefile); do
	what=${pair%%:*} pkg=${pair##*:}
	case $what in
	/*) [ -e "$what" ] || missing="$missing $pkg" ;;
	*) command -v "$what" >/dev/null || missing="$missing $pkg" ;;
	esac
done
[ -z "$missing" ] || { echo "demo: DEMO_CLUSTER=kubernetes needs$missing (make deps-kubernetes)"; exit 1; }
. hack/demo-lib.sh
. hack/demo-kube-lib.sh
demo_start

section "building the real cluster: homelab on 2 nodes, NetworkPolicy enforced by kube-router v2.1 (K3s 1.33's ICMP accepts) against the API server"
(cd lab/kuberouter && go build -o "$BIN/flowlens-kube-router" ./cmd/flowlens-kube-router)
"$BIN/flowlens-lab" up --kubernetes --nodes 2 --scenario homelab --k3s-icmp \
	--kube-router-bin "$BIN/flowlens-kube-router" --state-dir "$STATE" >"$STATE/up.txt" 2>>"$LOG" ||
	{ echo "demo: the cluster did not come up ($LOG):"; tail -n 30 "$LOG"; exit 1; }
KCFG=$(awk '$1 == "kubeconfig" { print $2 }' "$STATE/up.txt")
CP=$(awk '$1 == "apiserver" { print $3 }' "$STATE/up.txt")
KUBECTL=$(jq -r .binDir "$STATE/kubernetes/kube-state.json")/kubectl
PROM_NS=$CP TARGETS=(all)
grep -E '^(kubeconfig|node|scenario) ' "$STATE/up.txt"

section "flowlens judges by the git folder: a ConfigMap and the DaemonSet's --policies (kubectl apply -k hack/demo-kube)"
# git: the folder the agents judge by. It holds flowlens's own policy too, as a GitOps repo would.
mkdir -p "$STATE/git"
cp examples/homelab/network-policies/*.yaml "$STATE/git/"
kc -n flowlens get networkpolicy flowlens -o yaml >"$STATE/git/flowlens.yaml"
push_git
kc apply -k hack/demo-kube | grep -v unchanged
kc -n flowlens rollout status daemonset/flowlens --timeout=3m >/dev/null
wait_for 150 agents_say 'files:.*\(ok: [^;]*\)$' || { echo "demo: the agents do not judge by git alone:"; flowlens_at all status; exit 1; }
# The agents run in the nodes' network (hostNetwork): their metrics are at the nodes' addresses.
mapfile -t metrics < <(awk '$1 == "node" { print $6 ":9280" }' "$STATE/up.txt")
start_prometheus "${metrics[@]}"
section "agents running; flowlens status -P (both nodes)"
flowlens_at all status

section "live: flows the kernel dropped, on both nodes (traffic between the pods: $LOG)"
write_cases
observe_bg --verdict DROPPED
pod_traffic "$PHASE" "$STATE/cases.tsv"
sleep 3
stop_observers

section "drift through the API server"
kube_drift
section "linkding pings homepage through their default deny: K3s's kube-router accepts ICMP (classified, no alarm)"
ping_across
section "live: mismatches between git and the cluster, on both nodes"
observe_bg --mismatch=any
pod_traffic "$PHASE" "$STATE/database.tsv"
sleep 3
stop_observers

section "flowlens status -P: the cluster's applied set against git"
flowlens_at all status
section "Prometheus (127.0.0.1:9090 in the apiserver's namespace): alerts and drop rate per namespace"
show_prometheus
section "summary: flow records per source -> destination namespace (both nodes)"
flowlens_at all observe --first 1000000 -o json | jq -c 'select(.flow) | .flow' >"$STATE/flows.json"
summary "$STATE/flows.json"
keep_results "$STATE/flows.json"
echo "traffic log: $LOG"
