// Package e2e holds the privileged end-to-end tests: the real agent binary,
// with its real eBPF programs, observing real traffic through the lab's
// network namespaces and kube-router-shaped iptables rules.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flowlens/flowlens/internal/testenv"

	"github.com/flowlens/flowlens/lab/netns"
)

// bins holds the binaries built once for all tests; empty when not root.
var bins struct{ agent, cli string }

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() != 0 || testing.Short() {
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
	before, err := netns.List()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: listing network namespaces:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	// A leaked namespace is a failure: every test must clean up after
	// itself, also when it fails.
	after, err := netns.List()
	if err == nil {
		if leaked := ours(newNames(before, after)); len(leaked) > 0 {
			fmt.Fprintln(os.Stderr, "e2e: network namespaces leaked:", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// prefixes are the lab prefixes this package created; other packages'
// tests may be creating namespaces of their own at the same time.
var prefixes struct {
	sync.Mutex
	list []string
}

func ours(names []string) []string {
	prefixes.Lock()
	defer prefixes.Unlock()
	var out []string
	for _, n := range names {
		for _, p := range prefixes.list {
			if strings.HasPrefix(n, p+"-") {
				out = append(out, n)
			}
		}
	}
	return out
}

func newNames(before, after []string) []string {
	old := map[string]bool{}
	for _, n := range before {
		old[n] = true
	}
	var out []string
	for _, n := range after {
		if !old[n] {
			out = append(out, n)
		}
	}
	return out
}

func requireRoot(t testing.TB) {
	t.Helper()
	testenv.Root(t, "builds network namespaces, iptables rules and loads eBPF programs")
}
