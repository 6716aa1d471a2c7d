#!/usr/bin/env bash
# make demo: the homelab on two K3s-like nodes (network namespaces, flannel VXLAN), its ten
# policy files enforced by the real kube-router (v2.1.0 plus K3s >= 1.33's ICMP accepts, see
# lab/rules/k3sicmp.go), one flowlens agent per node judging every flow
# against the git folder, and Debian's prometheus scraping both agents with the shipped rules.
# Partway through, the cluster drifts from git (someone edits a policy on the cluster; a change
# merged in git is not applied yet): the live view shows the mismatches, `flowlens status` the
# drift, Prometheus the alert. A ping between two default-deny namespaces, which K3s's
# kube-router accepts anyway, is shown classified (ENFORCER_ALLOW), not alarmed. Ends with a
# per-namespace summary; removes everything it made.
# DEMO_PHASE (default 20s): how long each phase drives traffic.
# DEMO_LOG (default /tmp/flowlens-demo-traffic.log): where the lab's traffic log goes.
# DEMO_KEEP_FLOWS: a directory to copy the agents' flow logs to (the e2e test reads them).
# DEMO_CLUSTER=kubernetes: the same story on the real-cluster lab instead (hack/demo-kube.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
case ${DEMO_CLUSTER:-netns} in
netns) ;;
kubernetes) exec ./hack/demo-kube.sh ;;
*) echo "demo: DEMO_CLUSTER=$DEMO_CLUSTER: want netns (the default) or kubernetes"; exit 1 ;;
esac
[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces, iptables, BPF)"; exit 1; }
. hack/demo-lib.sh
demo_start

section "building the lab: homelab on 2 nodes, NetworkPolicy enforced by the real kube-router (v2.1 with K3s 1.33's ICMP accepts)"
(cd lab/kuberouter && go build -o "$BIN/flowlens-kube-router" ./cmd/flowlens-kube-router)
# --hold keeps the kube-router controllers running, so the drift below is a real policy change.
"$BIN/flowlens-lab" up --nodes 2 --scenario homelab --enforcer kube-router --k3s-icmp --hold \
	--kube-router-bin "$BIN/flowlens-kube-router" --state-dir "$STATE" >"$STATE/up.txt" 2>>"$LOG" &
pids+=($!)
wait_for 600 grep -q '^holding' "$STATE/up.txt" || { echo "demo: the lab did not come up; see $LOG"; exit 1; }
N1=$(node_field node1 4); N2=$(node_field node2 4)
IP1=$(node_field node1 6); IP2=$(node_field node2 6)
PROM_NS=$N1 TARGETS=("$IP1:4280" "$IP2:4280")
cli_for() { CLI=(ip netns exec "$N1" "$BIN/flowlens") CLI_TAIL=(--server "$1"); }
# lab_pod POD FIELD: from `flowlens-lab status`'s "pod NS/NAME MARK netns NETNS ip IP ..." lines.
lab_pod() { "$BIN/flowlens-lab" status --state-dir "$STATE" | awk -v p="$1" -v f="$2" '$1 == "pod" && $2 == p { print $f }'; }
ping_from() { ip netns exec "$(lab_pod "$1" 5)" ping -c 2 -i 0.3 -W 1 "$(lab_pod "$2" 7)"; }

# git: the folder the agents judge by; applied: what the cluster (kube-router) enforces.
mkdir -p "$STATE/git"
cp examples/homelab/network-policies/*.yaml "$STATE/git/"
cat "$STATE"/git/*.yaml >"$STATE/applied.yaml"

named=()
while read -r _ nc; do named+=(--named-cidr "$nc"); done < <(grep '^named-cidr ' "$STATE/up.txt")
# The agents serve gRPC on lab addresses without TLS, inside the lab's
# namespaces only: --grpc-insecure-listen says that is meant.
for n in node1 node2; do
	ns=$(node_field $n 4); ip=$(node_field $n 6)
	ip netns exec "$ns" "$BIN/flowlens-agent" --node-name "$n" "${named[@]}" \
		--cluster-file "$STATE/cluster.yaml" --policies "$STATE/git" --cluster-policies "$STATE/applied.yaml" \
		--policy-reload-interval 1s \
		--flush-interval 2s --flow-log "$STATE/$n-flows.json" \
		--grpc-address "$ip:4280" --grpc-insecure-listen --metrics-address "$ip:9280" \
		--log-level warn 2>"$STATE/$n-agent.log" &
	pids+=($!)
done
for n in node1 node2; do
	ip=$(node_field $n 6)
	wait_for 100 sh -c "ip netns exec '$N1' '$BIN/flowlens' status --server '$ip:4280' 2>/dev/null | grep -q '(ok:'" ||
		{ echo "demo: agent on $n not ready:"; cat "$STATE/$n-agent.log"; exit 1; }
done
start_prometheus "$IP1:9280" "$IP2:9280"
section "agents running; flowlens status on node1"
ip netns exec "$N1" "$BIN/flowlens" status --server "$IP1:4280"

section "live: flows the kernel dropped, on both nodes (traffic log: $LOG)"
observe_bg --verdict DROPPED
"$BIN/flowlens-lab" traffic --state-dir "$STATE" --duration "$PHASE" >>"$LOG" 2>&1
stop_observers

section "drift"
drift
section "linkding pings homepage through their default deny: K3s's kube-router accepts ICMP (classified, no alarm)"
ping_across
section "live: mismatches between git and the cluster, on both nodes"
observe_bg --mismatch=any
"$BIN/flowlens-lab" traffic --state-dir "$STATE" --duration "$PHASE" >>"$LOG" 2>&1
sleep 3
stop_observers

section "flowlens status on node1: the cluster's applied set against git"
ip netns exec "$N1" "$BIN/flowlens" status --server "$IP1:4280"
section "Prometheus (127.0.0.1:9090 in node1's namespace): alerts and drop rate per namespace"
show_prometheus
section "summary: flow records per source -> destination namespace (both nodes)"
summary "$STATE/node1-flows.json" "$STATE/node2-flows.json"
keep_results "$STATE"/node?-flows.json
echo "traffic log: $LOG"
