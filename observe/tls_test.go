package observe

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/agent/observer"
)

// writeCert writes a certificate (signed by parent, or self-signed as a CA)
// and its key as PEM files and returns them with the parsed certificate.
func writeCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (string, string, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: parent == nil, BasicConstraintsValid: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	require.NoError(t, os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certPath, keyPath, cert, key
}

func TestObserveMTLS(t *testing.T) {
	dir := t.TempDir()
	caPath, _, ca, caKey := writeCert(t, dir, "ca", nil, nil)
	srvCert, srvKey, _, _ := writeCert(t, dir, "server", ca, caKey)
	cliCert, cliKey, _, _ := writeCert(t, dir, "client", ca, caKey)

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
