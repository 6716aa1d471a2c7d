package e2e

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestObserveShowsDropWithinASecond is issue 5's lab test: `flowlens
// observe -f --verdict DROPPED --to-namespace demo`, connected to a running
// agent (with its default 5 s flush: drops travel through the ring buffer,
// not the periodic flush), prints the lab's rejected connection within one
// second of it happening, with names, reason and the policy explanation.
func TestObserveShowsDropWithinASecond(t *testing.T) {
	l := startLab(t, 1)
	a := startAgent(t, l, "node1", "--flush-interval", "5s")
	cmd := exec.Command("ip", "netns", "exec", a.node.NetNS, bins.cli, "observe", "-f",
		"--verdict", "DROPPED", "--to-namespace", "demo", "--server", "127.0.0.1:4280", "--color", "never")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(time.Second) // let the stream reach the live tail

	fe := l.Pod("demo/frontend")
	_, db := podAddr(t, l, "demo/db", 8080)
	start := time.Now()
	_, _, err = tcpExchange(t, fe, db, 44001, []byte("x"))
	requireRefused(t, err)

	deadline := time.After(time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("observe exited: %s", stderr.String())
			}
			// A refused connection is one of frontend's attempts on db:8080,
			// from any source port.
			if !strings.Contains(line, "demo/frontend:* -> ") {
				continue
			}
			took := time.Since(start)
			t.Logf("after %s: %s", took, line)
			assert.Contains(t, line, "demo/frontend")
			assert.Contains(t, line, "demo/db")
			assert.Contains(t, line, "DROPPED")
			assert.Contains(t, line, "NETFILTER_DROP")
			assert.Contains(t, line, " 1 attempt ")
			assert.Contains(t, line, "default-deny-ingress", "the policy explanation")
			return
		case <-deadline:
			t.Fatalf("no DROPPED line for the rejected connection within 1s; stderr: %s", stderr.String())
		}
	}
}
