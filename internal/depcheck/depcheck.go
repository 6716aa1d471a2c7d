// Package depcheck keeps a binary's dependencies in bounds: the CLI must
// not link the daemon, the agent no API group it does not watch. Each
// binary's test lists what its main package links and names what it must
// not.
package depcheck

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/testenv"
)

// List is every package pkg links, as go list -deps prints them.
func List(t testing.TB, pkg string) []string {
	t.Helper()
	testenv.Tool(t, "go", "golang (or Go from go.dev)")
	out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatalf("go list -deps %s listed nothing: a check would pass on anything", pkg)
	}
	return deps
}

// Forbid fails t for each of deps that is one of forbidden or below it
// (a package path prefix up to a slash or, for a module's major version
// or gopkg.in name, a dot).
func Forbid(t testing.TB, binary string, deps []string, forbidden ...string) {
	t.Helper()
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") || strings.HasPrefix(dep, f+".") {
				t.Errorf("%s depends on %s", binary, dep)
			}
		}
	}
}
