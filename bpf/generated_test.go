package bpf

import (
	"os/exec"
	"testing"
)

// The committed bpf2go output must be what the C sources produce.
func TestGeneratedUpToDate(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang not installed: cannot regenerate the BPF objects")
	}
	if out, err := exec.Command("../hack/check-generated.sh", "bpf").CombinedOutput(); err != nil {
		t.Fatalf("check-generated.sh: %v\n%s", err, out)
	}
}
