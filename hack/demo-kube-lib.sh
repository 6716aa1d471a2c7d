# Functions of hack/demo-kube.sh (sourced after hack/demo-lib.sh; they use its BIN, STATE, LOG,
# CP, the apiserver's namespace, KCFG, its kubeconfig, and KUBECTL).
# shellcheck shell=bash

kc() { ip netns exec "$CP" "$KUBECTL" --kubeconfig "$KCFG" "$@"; }

# cli_for all: the flowlens CLI against every agent pod, port-forwarded through the API server.
cli_for() { CLI=(ip netns exec "$CP" "$BIN/flowlens") CLI_TAIL=(-P --kubeconfig "$KCFG"); }

# push_git: the git folder becomes the agents' ConfigMap, as a GitOps tool would sync it.
push_git() {
	kc -n flowlens create configmap flowlens-policies --from-file="$STATE/git" --dry-run=client -o yaml |
		kc apply -f - >/dev/null
	# kubelet refreshes ConfigMap volumes on its periodic resync (a minute or more); an update of
	# the pods makes it refresh theirs now.
	kc -n flowlens annotate pods -l app.kubernetes.io/name=flowlens --overwrite \
		"flowlens.dev/git-sync=$(date +%s%N)" >/dev/null
}

# agents_say PATTERN: every agent's `flowlens status` policy line matches PATTERN (grep -E).
agents_say() {
	local lines n
	lines=$(flowlens_at all status 2>/dev/null | grep '^Policy:') || return 1
	n=$(grep -c '^node ' "$STATE/up.txt")
	[ "$(grep -cE "$1" <<<"$lines")" = "$n" ]
}

# agents_loaded N: every agent pod has loaded the git folder N times (its first load included).
agents_loaded() {
	local p
	for p in $(kc -n flowlens get pods -l app.kubernetes.io/name=flowlens -o name); do
		[ "$(kc -n flowlens logs "$p" | grep -c 'intended policy set loaded')" -ge "$1" ] || return 1
	done
}

# write_cases: the scenario's pod-to-pod cases the demo drives, with the pods' addresses: in
# cases.tsv those into the database namespace (the drift's subject) and every denied one, in
# database.tsv the first alone. (All of them, one `kubectl exec` each, take over a minute a round.)
write_cases() {
	kc get pods -A -o json >"$STATE/pods.json"
	cases_where '.allowed == false or ((.to // "") | startswith("database/"))' >"$STATE/cases.tsv"
	cases_where '(.to // "") | startswith("database/")' >"$STATE/database.tsv"
}

# cases_where JQ-CONDITION: the scenario's cases to a pod that meet it, as pod_round reads them.
cases_where() {
	jq -r --slurpfile p "$STATE/pods.json" '
		($p[0].items | map({key: "\(.metadata.namespace)/\(.metadata.name)", value: .status.podIP}) | from_entries) as $ip |
		.scenario.cases[] | select((.service // "") == "" and ('"$1"')) |
		[.name, .from, $ip[.to], (.protocol | ascii_downcase), .port, .allowed] | @tsv' \
		"$STATE/kubernetes/kube-state.json"
}

# pod_traffic DURATION CASES: rounds of the cases in the file CASES, from the pods (labpod through
# kubectl exec, six at a time), until DURATION (seconds, "20s") has passed; at least two rounds,
# so that Prometheus sees each mismatch counter rise (the alert takes an increase()).
pod_traffic() {
	local end=$((SECONDS + ${1%s})) round=0
	while [ "$round" -lt 2 ] || [ "$SECONDS" -lt "$end" ]; do
		round=$((round + 1))
		pod_round "$round" "$2"
	done
}

pod_round() {
	local name from addr proto port want got running=()
	while IFS=$'\t' read -r name from addr proto port want; do
		(
			got=false
			kc -n "${from%/*}" exec "${from#*/}" -- /labpod connect "$proto" "$addr:$port" >/dev/null 2>&1 && got=true
			echo "$(date -u +%T) round=$1 case=\"$name\" from=$from addr=$addr:$port proto=$proto allowed=$got expected=$want"
		) >>"$LOG" 2>&1 &
		running+=($!)
		if [ "${#running[@]}" -ge 6 ]; then
			wait "${running[@]}"
			running=()
		fi
	done <"$2"
	[ "${#running[@]}" = 0 ] || wait "${running[@]}"
}

# kube_drift makes the cluster and git disagree through the API server: on the cluster someone
# applies database/allow-apps-ingress without linkding (kube-router enforces it at once); in
# git commafeed's access is revoked and synced to the agents' ConfigMap, but not applied.
kube_drift() {
	echo "$DRIFT_STORY"
	# As `kubectl edit` would: an update of the object in place (the other policies of the file
	# are replaced unchanged).
	without_app linkding | kc replace -f - | grep '/allow-apps-ingress '
	git_drift
	push_git
	wait_for 300 agents_say 'changed database/allow-apps-ingress' && wait_for 100 agents_loaded 2 ||
		echo "demo: the agents have not seen the drift yet"
	sleep 3 # kube-router's resync
}

# ping_from FROM-POD TO-POD: ping from inside the first pod's network namespace, found through its
# node's containerd.
ping_from() {
	local ns=${1%/*} name=${1#*/} node sock id pid
	node=$(kc -n "$ns" get pod "$name" -o jsonpath='{.spec.nodeName}')
	sock=$(jq -r --arg n "$node" '.nodes[] | select(.name == $n) | .dir' "$STATE/kubernetes/kube-state.json")/containerd/containerd.sock
	id=$(ctr -a "$sock" -n k8s.io containers ls -q "labels.\"io.kubernetes.pod.namespace\"==$ns,labels.\"io.kubernetes.pod.name\"==$name" | head -1)
	pid=$(ctr -a "$sock" -n k8s.io tasks ls | awk -v id="$id" '$1 == id { print $2 }')
	nsenter --net="/proc/$pid/ns/net" ping -c 2 -i 0.3 -W 1 \
		"$(kc -n "${2%/*}" get pod "${2#*/}" -o jsonpath='{.status.podIP}')"
}
