#!/usr/bin/env bash
# make demo: build the two-node K3s-like lab in network namespaces, run the
# agent on each node, drive the scenario's traffic and show the flows as they
# happen, with names, kernel verdicts and intended-policy verdicts.
# DEMO_DURATION (default 30s; 0 = until Ctrl-C).
# DEMO_SCENARIO: homelab (default: the seed's homelab, its ten policy files
# enforced by the real kube-router controller, judged against the same YAML)
# or default (the small scenario, hand-written kube-router-shaped rules, with
# a ClusterIP service).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces, iptables, BPF)"; exit 1; }
BIN=$(cd "${BIN:-bin}" && pwd)
DURATION=${DEMO_DURATION:-30s}
SCENARIO=${DEMO_SCENARIO:-homelab}
STATE=$(mktemp -d /tmp/flowlens-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	"$BIN/flowlens-lab" down --state-dir "$STATE" >/dev/null 2>&1 || true
	rm -rf "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case "$SCENARIO" in
homelab)
	echo "== building the kube-router network-policy controller (test-only helper)"
	(cd lab/kuberouter && go build -o "$BIN/flowlens-kube-router" ./cmd/flowlens-kube-router)
	echo "== building the lab: the homelab on 2 nodes (flannel VXLAN), policies enforced by real kube-router"
	"$BIN/flowlens-lab" up --nodes 2 --scenario homelab --enforcer kube-router \
		--kube-router-bin "$BIN/flowlens-kube-router" --state-dir "$STATE" | tee "$STATE/up.txt"
	# The intended set is the GitOps folder itself.
	POLICIES=examples/homelab/network-policies
	;;
default)
	echo "== building the lab (2 nodes, flannel VXLAN, kube-router-shaped NetworkPolicy rules)"
	"$BIN/flowlens-lab" up --nodes 2 --state-dir "$STATE" | tee "$STATE/up.txt"
	POLICIES=$STATE/policies.yaml
	;;
*)
	echo "demo: DEMO_SCENARIO=$SCENARIO: want homelab or default"
	exit 1
	;;
esac
node_netns() { awk -v n="$1" '$1 == "node" && $2 == n { print $4 }' "$STATE/up.txt"; }
N1=$(node_netns node1); N2=$(node_netns node2)

# Names for the addresses outside the cluster the homelab's policies talk about.
named=()
while read -r _ nc; do named+=(--named-cidr "$nc"); done < <(grep '^named-cidr ' "$STATE/up.txt")
for n in node1 node2; do
	ns=$(node_netns $n)
	ip netns exec "$ns" "$BIN/flowlens-agent" --node-name "$n" "${named[@]}" \
		--cluster-file "$STATE/cluster.yaml" --policies "$POLICIES" \
		--flush-interval 2s --flow-log "$STATE/$n-flows.json" \
		--grpc-address 127.0.0.1:4280 --metrics-address 127.0.0.1:9280 \
		--log-level warn 2>"$STATE/$n-agent.log" &
	pids+=($!)
done
for n in node1 node2; do
	ns=$(node_netns $n)
	# Up once the intended policy set has compiled (attaching follows at once).
	for _ in $(seq 100); do
		ip netns exec "$ns" "$BIN/flowlens" status --server 127.0.0.1:4280 2>/dev/null | grep -q '(ok:' && break
		sleep 0.2
	done
done
sleep 1
echo "== agents running; flowlens status on node1:"
ip netns exec "$N1" "$BIN/flowlens" status --server 127.0.0.1:4280

echo "== live flows on node1 (flowlens observe -f), while the lab drives traffic for $DURATION"
ip netns exec "$N1" "$BIN/flowlens" observe -f --server 127.0.0.1:4280 --color always &
pids+=($!)
if [ "$DURATION" = 0 ]; then
	"$BIN/flowlens-lab" traffic --state-dir "$STATE"
else
	"$BIN/flowlens-lab" traffic --state-dir "$STATE" --duration "$DURATION"
fi
sleep 3
echo
echo "== node2 saw these drops (flowlens observe --verdict DROPPED --last 10):"
ip netns exec "$N2" "$BIN/flowlens" observe --server 127.0.0.1:4280 --verdict DROPPED --last 10
echo
echo "== drop metrics on node1:"
# bash's /dev/tcp: no curl needed inside the node namespace.
ip netns exec "$N1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9280 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' |
	grep -E '^flowlens_(packets_total\{.*verdict="DROPPED"|policy_mismatches_total|policy_verdicts_total)' | head -20 || true
