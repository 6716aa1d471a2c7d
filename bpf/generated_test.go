package bpf

import (
	"os/exec"
	"testing"

	"github.com/flowlens/flowlens/internal/testenv"
)

// The committed bpf2go output must be what the C sources produce.
func TestGeneratedUpToDate(t *testing.T) {
	testenv.Tool(t, "clang", "clang")
	if out, err := exec.Command("../hack/check-generated.sh", "bpf").CombinedOutput(); err != nil {
		t.Fatalf("check-generated.sh: %v\n%s", err, out)
	}
}
