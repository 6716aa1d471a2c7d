package observer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/flowlens/flowlens/internal/testcerts"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.Issue(t, dir, "ca", nil, true)
	server := testcerts.Issue(t, dir, "server", ca, false)
	client := testcerts.Issue(t, dir, "client", ca, false)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	clientPair, err := tls.LoadX509KeyPair(client.CertPath, client.KeyPath)
	require.NoError(t, err)

	withCreds := func(tc *tls.Config) grpc.DialOption {
		return grpc.WithTransportCredentials(credentials.NewTLS(tc))
	}
	status := func(c flowlensv1.ObserverClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.ServerStatus(ctx, &flowlensv1.ServerStatusRequest{})
		return err
	}

	t.Run("tls", func(t *testing.T) {
		cfg := ServeConfig{TLSCert: server.CertPath, TLSKey: server.KeyPath}
		c, _, _ := startServer(t, NewServer(NewRing(8), nil, "n", nil), cfg, withCreds(&tls.Config{RootCAs: pool}))
		assert.NoError(t, status(c))
		untrusted, _, _ := startServer(t, NewServer(NewRing(8), nil, "n", nil), cfg, withCreds(&tls.Config{RootCAs: x509.NewCertPool()}))
		assert.Error(t, status(untrusted), "a client that does not trust the CA must fail")
	})
	t.Run("mtls", func(t *testing.T) {
		cfg := ServeConfig{TLSCert: server.CertPath, TLSKey: server.KeyPath, TLSClientCA: ca.CertPath}
		c, _, _ := startServer(t, NewServer(NewRing(8), nil, "n", nil), cfg,
			withCreds(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientPair}}))
		assert.NoError(t, status(c))
		anon, _, _ := startServer(t, NewServer(NewRing(8), nil, "n", nil), cfg, withCreds(&tls.Config{RootCAs: pool}))
		assert.Error(t, status(anon), "a client without a certificate must be refused")
	})
	t.Run("config errors", func(t *testing.T) {
		for _, cfg := range []ServeConfig{
			{TLSCert: server.CertPath},
			{TLSClientCA: ca.CertPath},
			{TLSCert: server.CertPath, TLSKey: filepath.Join(dir, "missing.key")},
			{TLSCert: server.CertPath, TLSKey: server.KeyPath, TLSClientCA: server.KeyPath},
		} {
			err := Serve(context.Background(), cfg, NewServer(NewRing(8), nil, "n", nil), nil)
			assert.Error(t, err, "%+v", cfg)
		}
	})
}
