package main

import (
	"testing"

	"github.com/flowlens/flowlens/internal/depcheck"
)

// The CLI must not link the daemon: the kernel side, netlink, enrichment
// and log rotation would make it several times larger; nor client-go's
// clientset, which links every API group (the port-forward lists pods
// through a REST client of its own).
func TestCLIDoesNotLinkTheDaemon(t *testing.T) {
	depcheck.Forbid(t, "cmd/flowlens", depcheck.List(t, "."),
		"github.com/cilium/ebpf",
		"github.com/vishvananda/netlink",
		"github.com/flowlens/flowlens/enrich",
		"github.com/flowlens/flowlens/agent",
		"github.com/flowlens/flowlens/aggregate",
		"github.com/flowlens/flowlens/bpf",
		"gopkg.in/natefinch/lumberjack",
		"k8s.io/client-go/kubernetes",
		"k8s.io/client-go/informers",
	)
}
