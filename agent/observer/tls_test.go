package observer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
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
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

type testCert struct {
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	certPath string
	keyPath  string
}

// issue makes a certificate signed by ca (self-signed when ca is nil) and
// writes it and its key as PEM into dir.
func issue(t *testing.T, dir, name string, ca *testCert, isCA bool) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		IsCA:         isCA, BasicConstraintsValid: true,
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	c := &testCert{cert: cert, key: key, certPath: filepath.Join(dir, name+".crt"), keyPath: filepath.Join(dir, name+".key")}
	require.NoError(t, os.WriteFile(c.certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(c.keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return c
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := issue(t, dir, "ca", nil, true)
	server := issue(t, dir, "server", ca, false)
	client := issue(t, dir, "client", ca, false)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	clientPair, err := tls.LoadX509KeyPair(client.certPath, client.keyPath)
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
		cfg := ServeConfig{TLSCert: server.certPath, TLSKey: server.keyPath}
		c, _, _ := startServer(t, NewServer(NewRing(8), nil, "n", nil), cfg, withCreds(&tls.Config{RootCAs: pool}))
		assert.NoError(t, status(c))
		untrusted, _, _ := startServer(t, NewServer(NewRing(8), nil, "n", nil), cfg, withCreds(&tls.Config{RootCAs: x509.NewCertPool()}))
		assert.Error(t, status(untrusted), "a client that does not trust the CA must fail")
	})
	t.Run("mtls", func(t *testing.T) {
		cfg := ServeConfig{TLSCert: server.certPath, TLSKey: server.keyPath, TLSClientCA: ca.certPath}
		c, _, _ := startServer(t, NewServer(NewRing(8), nil, "n", nil), cfg,
			withCreds(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientPair}}))
		assert.NoError(t, status(c))
		anon, _, _ := startServer(t, NewServer(NewRing(8), nil, "n", nil), cfg, withCreds(&tls.Config{RootCAs: pool}))
		assert.Error(t, status(anon), "a client without a certificate must be refused")
	})
	t.Run("config errors", func(t *testing.T) {
		for _, cfg := range []ServeConfig{
			{TLSCert: server.certPath},
			{TLSClientCA: ca.certPath},
			{TLSCert: server.certPath, TLSKey: filepath.Join(dir, "missing.key")},
			{TLSCert: server.certPath, TLSKey: server.keyPath, TLSClientCA: server.keyPath},
		} {
			err := Serve(context.Background(), cfg, NewServer(NewRing(8), nil, "n", nil), nil)
			assert.Error(t, err, "%+v", cfg)
		}
	})
}
