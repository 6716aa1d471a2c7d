package observe

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Pointing the CLI at something that is not the agent's gRPC port (its
// metrics port, say) says so instead of printing an HTTP/2 framing error.
func TestNotAGRPCPort(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := lis.Addr().String()
	ctx := context.Background()

	_, _, err = runCmd(t, ctx, observeCmd(ctx, "--server", addr, "--timeout", "5s"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is "+addr+" a flowlens agent's gRPC port?")

	_, _, err = runCmd(t, ctx, func(stdout, stderr *bytes.Buffer) error {
		cmd := NewStatusCommand(stdout, stderr)
		cmd.SetArgs([]string{"--server", addr})
		return cmd.ExecuteContext(ctx)
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is "+addr+" a flowlens agent's gRPC port?")
}
