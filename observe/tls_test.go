package observe

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/agent/observer"
	"github.com/flowlens/flowlens/internal/testcerts"
)

func TestObserveMTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.Issue(t, dir, "ca", nil, true)
	srv := testcerts.Issue(t, dir, "server", ca, false)
	cli := testcerts.Issue(t, dir, "client", ca, false)
	caPath, srvCert, srvKey, cliCert, cliKey := ca.CertPath, srv.CertPath, srv.KeyPath, cli.CertPath, cli.KeyPath

	ring := observer.NewRing(8)
	ring.Write(sampleResponses()[0])
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- observer.ServeListener(ctx, lis, observer.ServeConfig{TLSCert: srvCert, TLSKey: srvKey, TLSClientCA: caPath},
			observer.NewServer(ring, nil, "k3s-1", nil), nil)
	}()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	run := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		cmd, o := newObserveCommand(&stdout, &stderr)
		o.loc = time.UTC
		cmd.SetArgs(append([]string{"--server", lis.Addr().String(), "--timeout", "5s"}, args...))
		err := cmd.ExecuteContext(context.Background())
		return stdout.String(), err
	}
	out, err := run("--tls", "--tls-ca-cert-files", caPath, "--tls-client-cert-file", cliCert, "--tls-client-key-file", cliKey)
	require.NoError(t, err)
	assert.Contains(t, out, "DROPPED (NETFILTER_DROP)")

	_, err = run("--tls", "--tls-ca-cert-files", caPath)
	assert.Error(t, err, "the server requires a client certificate")
	_, err = run("--tls", "--tls-ca-cert-files", caPath, "--tls-client-cert-file", cliCert)
	assert.ErrorContains(t, err, "--tls-client-cert-file and --tls-client-key-file go together")
	_, err = run("--tls", "--tls-ca-cert-files", filepath.Join(dir, "server.key"))
	assert.ErrorContains(t, err, "no PEM certificates")
}

func TestTablePrinterStreamsAligned(t *testing.T) {
	var buf bytes.Buffer
	p := newTablePrinter(&buf, printOptions{loc: time.UTC})
	rs := sampleResponses()
	require.NoError(t, p.print(rs[1]))
	require.NoError(t, p.flush())
	first := buf.Len()
	require.NoError(t, p.print(rs[1]))
	require.NoError(t, p.flush())
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	require.Len(t, lines, 3, "header once, then one row per flush")
	assert.Equal(t, string(lines[1]), string(lines[2]), "a later batch keeps the earlier column widths")
	assert.Positive(t, first)
}
