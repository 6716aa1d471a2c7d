// Package testenv decides whether a test that needs more than the Go
// toolchain (root, the kernel's BPF and BTF, Debian tools) can run here.
//
// Such tests skip with a message when the machine cannot run them, and in
// the quick ring (go test -short). On CI a skip would hide a lost
// capability, so .ci/run sets FLOWLENS_REQUIRE_PRIVILEGED=1, which turns
// every one of these skips into a failure.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireEnv names the environment variable that turns skips into failures.
const RequireEnv = "FLOWLENS_REQUIRE_PRIVILEGED"

// Required reports whether skips must fail (FLOWLENS_REQUIRE_PRIVILEGED=1).
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Skip skips tb with the reason, or fails it when skips are not allowed.
// In the quick ring (-short) it always skips: -short asks for no
// privileged tests at all.
func Skip(tb testing.TB, reason string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("quick ring (-short): " + reason)
	}
	if Required() {
		tb.Fatalf("%s=1 forbids skipping: %s", RequireEnv, reason)
	}
	tb.Skip(reason)
}

// Root skips tb unless it runs as root, saying what the test needs root
// for, and skips it in the quick ring.
func Root(tb testing.TB, needs string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("quick ring (-short): privileged test: " + needs)
	}
	if os.Geteuid() != 0 {
		Skip(tb, "needs root: "+needs)
	}
}

// Tool skips tb unless the command is on PATH (or in /usr/sbin), naming
// the Debian package that brings it.
func Tool(tb testing.TB, cmd, pkg string) string {
	tb.Helper()
	if p, err := exec.LookPath(cmd); err == nil {
		return p
	}
	if p := "/usr/sbin/" + cmd; isExec(p) {
		return p
	}
	Skip(tb, cmd+" not installed (make deps installs Debian package "+pkg+")")
	return ""
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
