package main

import (
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/depcheck"
)

// The agent talks to the API server through kubeapi's REST clients: client-go's
// clientset and informer factory link every API group and register all of
// them at start-up, which doubled the binary and cost resident set before
// the agent held any state. Only the groups it decodes may be linked.
func TestAgentLinksOnlyTheAPIGroupsItWatches(t *testing.T) {
	deps := depcheck.List(t, ".")
	depcheck.Forbid(t, "cmd/flowlens-agent", deps,
		"k8s.io/client-go/kubernetes",
		"k8s.io/client-go/informers",
		"k8s.io/client-go/listers",
		"k8s.io/client-go/applyconfigurations",
	)
	allowedGroups := map[string]bool{
		"k8s.io/api/core/v1":       true, // pods, namespaces, nodes, services
		"k8s.io/api/discovery/v1":  true, // EndpointSlices
		"k8s.io/api/networking/v1": true, // NetworkPolicies
	}
	var groups []string
	for _, dep := range deps {
		if strings.HasPrefix(dep, "k8s.io/api/") {
			groups = append(groups, dep)
			if !allowedGroups[dep] {
				t.Errorf("cmd/flowlens-agent links API group %s, which it does not watch", dep)
			}
		}
	}
	if len(groups) == 0 {
		t.Errorf("no k8s.io/api package in go list -deps: the check would pass on anything")
	}
}
