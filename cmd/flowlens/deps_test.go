package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/testenv"
)

// The CLI must not link the daemon: the kernel side, netlink, enrichment
// and log rotation would make it several times larger; nor client-go's
// clientset, which links every API group (the port-forward lists pods
// through a REST client of its own).
func TestCLIDoesNotLinkTheDaemon(t *testing.T) {
	testenv.Tool(t, "go", "golang (or Go from go.dev)")
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/cilium/ebpf",
		"github.com/vishvananda/netlink",
		"github.com/flowlens/flowlens/enrich",
		"github.com/flowlens/flowlens/agent",
		"github.com/flowlens/flowlens/aggregate",
		"github.com/flowlens/flowlens/bpf",
		"gopkg.in/natefinch/lumberjack",
		"k8s.io/client-go/kubernetes",
		"k8s.io/client-go/informers",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") || strings.HasPrefix(dep, f+".") {
				t.Errorf("cmd/flowlens depends on %s", dep)
			}
		}
	}
}
