package ui

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/agent/observer"
)

// TestBadFlagsFailBeforeListening holds the --listen port itself: had the
// command listened before checking its flags, it would fail with "address
// already in use" instead of naming the bad flag.
func TestBadFlagsFailBeforeListening(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer held.Close()
	listen := held.Addr().String()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"listen without port", []string{"--listen", "localhost"}, `--listen "localhost": want host:port`},
		{"listen port out of range", []string{"--listen", "127.0.0.1:70000"}, "port must be a number"},
		{"listen host name", []string{"--listen", "example.com:80"}, "host must be an IP address"},
		{"bad verdict", []string{"--listen", listen, "--verdict", "MAYBE"}, "unknown verdict"},
		{"dangling not", []string{"--listen", listen, "--not"}, "--not must be followed by a filter flag"},
		{"bad server", []string{"--listen", listen, "--server", "nohost"}, `--server "nohost": want host:port`},
		{"tls flag without tls", []string{"--listen", listen, "--tls-allow-insecure"}, "TLS flags need --tls"},
		{"bad agent port", []string{"--listen", listen, "-P", "--agent-port", "0"}, "--agent-port 0"},
		{"argument", []string{"--listen", listen, "extra"}, `unknown command "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := NewCommand(&stdout, &stderr)
			cmd.SetArgs(tc.args)
			err := cmd.ExecuteContext(context.Background())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "address already in use")
			assert.Empty(t, stdout.String(), "no address printed")
		})
	}
}

// syncBuffer is a bytes.Buffer the command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCommandPrintsAddressServesPageAndStops(t *testing.T) {
	conn := startAgent(t, observer.NewRing(10))
	var stdout, stderr syncBuffer
	cmd := NewCommand(&stdout, &stderr)
	cmd.SetArgs([]string{"--server", conn.Target(), "--listen", "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- cmd.ExecuteContext(ctx) }()

	var url string
	require.Eventually(t, func() bool {
		line, ok := strings.CutPrefix(stdout.String(), "flowlens ui: ")
		url = strings.TrimSpace(line)
		return ok && strings.HasSuffix(line, "\n")
	}, 5*time.Second, 10*time.Millisecond, "address printed; stderr: %s", stderr.String())
	assert.Regexp(t, `^http://127\.0\.0\.1:\d+/$`, url)
	resp, err := http.Get(url)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), "<title>flowlens</title>")

	cancel()
	select {
	case err := <-errc:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("ui did not stop when its context ended")
	}
}
