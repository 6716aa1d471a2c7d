# Functions of hack/demo.sh and hack/demo-kube.sh (sourced; they use its BIN, STATE, LOG, pids,
# PROM_NS, the namespace Prometheus runs in, and TARGETS, the agents' addresses, and call its
# cli_for TARGET, which sets CLI and CLI_TAIL to the flowlens CLI's argv around a subcommand,
# for the agent at TARGET).
# shellcheck shell=bash

# The mismatch alert's expression, as the shipped rules file has it.
MISMATCH_EXPR=$(awk '/alert: FlowlensPolicyMismatch/ { f = 1 } f && /expr:/ { sub(/^ *expr: */, ""); print; exit }' \
	deploy/prometheus/flowlens-rules.yaml)
DROP_RATE_EXPR='sum by (namespace) (rate(flowlens_packets_total{verdict="DROPPED",drop_reason="NETFILTER_DROP"}[10m])) / sum by (namespace) (rate(flowlens_packets_total[10m]))'

# demo_start sets what both demos share (BIN, PHASE, LOG, STATE, pids) and a clean exit, also on
# failure or Ctrl-C: the processes in pids end, `flowlens-lab down` takes the lab away, STATE goes.
demo_start() {
	BIN=$(cd "${BIN:-bin}" && pwd)
	PHASE=${DEMO_PHASE:-20s}
	LOG=${DEMO_LOG:-/tmp/flowlens-demo-traffic.log}
	STATE=$(mktemp -d /tmp/flowlens-demo.XXXXXX)
	pids=()
	trap demo_cleanup EXIT
	trap 'exit 130' INT TERM
	: >"$LOG"
}
demo_cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	"$BIN/flowlens-lab" down --state-dir "$STATE" >/dev/null 2>&1 || true
	rm -rf "$STATE"
}

section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# wait_for N CMD...: run CMD every 0.2 s, at most N times, until it succeeds.
wait_for() {
	local n=$1; shift
	for _ in $(seq "$n"); do "$@" && return 0; sleep 0.2; done
	return 1
}

# node_field NODE FIELD: from up.txt's "node NAME netns NS ip IP podCIDR CIDR" lines.
node_field() { awk -v n="$1" -v f="$2" '$1 == "node" && $2 == n { print $f }' "$STATE/up.txt"; }

# flowlens_at TARGET ARGS...: the flowlens CLI against the agent at TARGET.
flowlens_at() {
	cli_for "$1"
	shift
	"${CLI[@]}" "$@" "${CLI_TAIL[@]}"
}

urlenc() { jq -rn --arg s "$1" '$s | @uri'; }
curl_prom() { ip netns exec "$PROM_NS" curl -sf "http://127.0.0.1:9090$1"; }

# start_prometheus ADDR...: Debian's prometheus in PROM_NS, bound to its loopback, scraping the
# agents' metrics at ADDR... with a copy of the shipped rules whose `for:` durations are cut to
# 10 s (lab only).
start_prometheus() {
	local targets
	targets=$(printf '"%s", ' "$@")
	mkdir -p "$STATE/prom"
	sed -E 's/^( *for: ).*/\110s/' deploy/prometheus/flowlens-rules.yaml >"$STATE/prom/rules.yaml"
	cat >"$STATE/prom/prometheus.yml" <<EOF
global: {scrape_interval: 2s, evaluation_interval: 2s}
rule_files: [$STATE/prom/rules.yaml]
scrape_configs:
  - job_name: flowlens
    static_configs: [{targets: [${targets%, }]}]
EOF
	ip netns exec "$PROM_NS" prometheus --config.file "$STATE/prom/prometheus.yml" --storage.tsdb.path "$STATE/prom/data" \
		--web.listen-address 127.0.0.1:9090 >"$STATE/prom/log" 2>&1 &
	pids+=($!)
	wait_for 100 curl_prom /-/ready >/dev/null || { echo "demo: prometheus did not start:"; tail "$STATE/prom/log"; exit 1; }
}

# observe_bg FILTER...: follow the agents with the filter (compact, colour).
obs=()
observe_bg() {
	for t in "${TARGETS[@]}"; do
		# A plain command, not a function: its PID is the CLI's, for stop_observers.
		cli_for "$t"
		"${CLI[@]}" observe -f --color always --last 0 "$@" "${CLI_TAIL[@]}" &
		obs+=($!)
		pids+=($!)
	done
}
stop_observers() {
	for p in "${obs[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	obs=()
}

# drift makes the cluster and git disagree, as in a real homelab:
# on the cluster, someone edits database/allow-apps-ingress and drops linkding (kube-router
# applies it); in git, commafeed's database access is revoked but not applied yet.
DRIFT_FILE=allow-apps-to-database.yaml
DRIFT_STORY="cluster: 'kubectl edit' drops linkding from database/allow-apps-ingress; git: commafeed's database access revoked, not applied yet"
# without_app APP: the drifted policy file without APP in its list of namespaces.
without_app() { sed "/^                  - $1\$/d" "examples/homelab/network-policies/$DRIFT_FILE"; }
# git_drift: in git, commafeed's database access is revoked.
git_drift() { without_app commafeed >"$STATE/git/$DRIFT_FILE"; }

# (hack/demo.sh's: the netns lab's kube-router reads the applied set from files; demo-kube.sh's
# kube_drift goes through the API server.)
drift() {
	echo "$DRIFT_STORY"
	git_drift
	for f in examples/homelab/network-policies/*.yaml; do
		if [ "$(basename "$f")" = "$DRIFT_FILE" ]; then
			without_app linkding
		else
			cat "$f"
		fi
	done >"$STATE/applied.yaml.new"
	mv "$STATE/applied.yaml.new" "$STATE/applied.yaml"
	# The lab's kube-router controllers (children of `flowlens-lab up --hold`) re-read their
	# policy file on SIGHUP and apply the difference.
	local lab=${pids[0]}
	for n in node1 node2; do cp "$STATE/applied.yaml" "$STATE/kube-router-$n-policies.yaml"; done
	for p in $(pgrep -P "$lab"); do kill -HUP "$p"; done
	# Until the agents reloaded both sides (1 s interval) and kube-router resynced.
	wait_for 50 sh -c "ip netns exec '$N1' '$BIN/flowlens' status --server '$IP1:4280' | grep -q 'differs from the files'" || true
	sleep 3
}

# ping_across: linkding pings homepage. Both namespaces deny everything by default and no policy
# allows ICMP between them, but K3s >= 1.33's kube-router accepts echo requests before any
# policy (the lab installs those rules, --k3s-icmp): the kernel forwards the ping, and the agents'
# default profile (k3s-kube-router) classifies it ENFORCER_ALLOW, with the reason, instead of
# raising a mismatch nobody could fix with a policy.
# The script's ping_from FROM-POD TO-POD pings from inside the first pod's network namespace.
ping_across() {
	ping_from linkding/linkding-0 homepage/homepage-0 >>"$LOG" 2>&1 || echo "demo: the ping was not answered (see $LOG)"
	sleep 3 # a flush
	flowlens_at "${TARGETS[0]}" observe --color always --protocol icmpv4 \
		--from-pod linkding/linkding-0 --to-pod homepage/homepage-0 --last 1
}

show_prometheus() {
	sleep 4 # two scrapes and an evaluation after the last flush
	echo "alerts (GET /api/v1/alerts):"
	curl_prom /api/v1/alerts | jq -r '.data.alerts[] | "  \(.state | ascii_upcase) \(.labels.alertname) \(.labels.mismatch // "") \(.labels.source_namespace // .labels.namespace // "") -> \(.labels.destination_namespace // "")"'
	echo "explained by the enforcer profile (ENFORCER_ALLOW: counted, not alerted):"
	curl_prom "/api/v1/query?query=$(urlenc 'sum by (source_namespace, destination_namespace) (flowlens_policy_mismatches_total{mismatch="ENFORCER_ALLOW"}) > 0')" |
		jq -r '.data.result[] | "  \(.metric.source_namespace) -> \(.metric.destination_namespace)\t\(.value[1]) flow records"'
	echo "drop rate per namespace (the FlowlensDropRateHigh ratio):"
	curl_prom "/api/v1/query?query=$(urlenc "$DROP_RATE_EXPR")" |
		jq -r '.data.result[] | "  \(.metric.namespace)\t\((.value[1] | tonumber) * 100 | floor)%"' | sort
}

# keep_results FLOWLOG...: with DEMO_KEEP_FLOWS, copy the flow logs and Prometheus's answers
# there (the e2e tests read them).
keep_results() {
	[ -n "${DEMO_KEEP_FLOWS:-}" ] || return 0
	mkdir -p "$DEMO_KEEP_FLOWS"
	cp "$@" "$DEMO_KEEP_FLOWS/"
	curl_prom "/api/v1/query?query=$(urlenc "$MISMATCH_EXPR")" >"$DEMO_KEEP_FLOWS/alert-expr.json" || true
	curl_prom "/api/v1/alerts" >"$DEMO_KEEP_FLOWS/alerts.json" || true
	curl_prom "/api/v1/query?query=flowlens_policy_mismatches_total" >"$DEMO_KEEP_FLOWS/mismatches.json" || true
}

# summary FLOWLOG...: per source -> destination namespace, flow records forwarded, dropped,
# mismatched (UNEXPECTED_*) and explained by the enforcer profile; mismatch rows marked "!!".
summary() {
	jq -rs '
		map(select(.verdict != null)) |
		group_by([(.source.namespace // .source.name // "?"), (.destination.namespace // .destination.name // "?")]) |
		map({s: (.[0].source.namespace // .[0].source.name // "?"), d: (.[0].destination.namespace // .[0].destination.name // "?"),
			f: map(select(.verdict == "FORWARDED")) | length, x: map(select(.verdict == "DROPPED")) | length,
			m: map(select(.policy.mismatch == "UNEXPECTED_DROP" or .policy.mismatch == "UNEXPECTED_ALLOW")) | length,
			e: map(select(.policy.mismatch == "ENFORCER_ALLOW")) | length}) |
		(["", "SOURCE", "DESTINATION", "FORWARDED", "DROPPED", "MISMATCHED", "ENFORCER"] | @tsv),
		(.[] | [(if .m > 0 then "!!" else "" end), .s, .d, .f, .x, .m, .e] | @tsv)' "$@" | column -t -s $'\t'
}
