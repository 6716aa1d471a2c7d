// Package e2e holds the privileged end-to-end tests: the real agent binary,
// with its real eBPF programs, observing real traffic through the lab's
// network namespaces and kube-router-shaped iptables rules.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bins holds the binaries built once for all tests; empty when not root.
var bins struct{ agent, cli string }

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		// Every test skips with its own message.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "flowlens-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/flowlens-agent", "../cmd/flowlens")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building binaries:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	bins.agent = filepath.Join(dir, "flowlens-agent")
	bins.cli = filepath.Join(dir, "flowlens")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces, iptables rules and loads eBPF programs")
	}
}
