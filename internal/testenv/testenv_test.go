package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The behaviour under test is a skip or a failure of a test, so each case
// runs this test binary again on a helper test and reads its verdict.
func TestSkipOrFail(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		return
	}
	cases := []struct {
		name    string
		env     []string
		short   bool
		wantOK  bool
		wantOut string
	}{
		{name: "skip allowed", env: nil, wantOK: true, wantOut: "SKIP"},
		{name: "skip forbidden on CI", env: []string{RequireEnv + "=1"}, wantOK: false, wantOut: "forbids skipping"},
		{name: "quick ring skips even on CI", env: []string{RequireEnv + "=1"}, short: true, wantOK: true, wantOut: "quick ring"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-test.run=^TestHelperSkips$", "-test.v"}
			if tc.short {
				args = append(args, "-test.short")
			}
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(append(os.Environ(), "TESTENV_CHILD=1", RequireEnv+"="), tc.env...)
			out, err := cmd.CombinedOutput()
			if (err == nil) != tc.wantOK {
				t.Fatalf("exit error %v, want ok=%v; output:\n%s", err, tc.wantOK, out)
			}
			if !strings.Contains(string(out), tc.wantOut) {
				t.Fatalf("output lacks %q:\n%s", tc.wantOut, out)
			}
		})
	}
}

func TestHelperSkips(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") != "1" {
		return // only meaningful as TestSkipOrFail's child
	}
	Skip(t, "the machine lacks something")
}

func TestToolFindsAndSkips(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		return
	}
	if p := Tool(t, "sh", "dash"); p == "" {
		t.Fatal("sh not found")
	}
}
