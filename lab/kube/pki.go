package kube

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// pki is the lab cluster's key material, all under one directory.
type pki struct {
	dir string
}

func (p pki) path(name string) string { return filepath.Join(p.dir, name) }

// CA and friends, as file names under pki.dir.
const (
	caCert        = "ca.crt"
	caKey         = "ca.key"
	apiserverCert = "apiserver.crt"
	apiserverKey  = "apiserver.key"
	adminCert     = "admin.crt"
	adminKey      = "admin.key"
	saKey         = "sa.key" // signs ServiceAccount tokens; the public half is derived from it
)

// writePKI creates a CA, the apiserver's serving certificate for the lab address and the
// kubernetes Service's ClusterIP, one client certificate in system:masters that every component
// uses (the lab does not exercise the Node authorizer), and the ServiceAccount signing key.
func writePKI(dir string, apiserverIP, serviceIP net.IP) (pki, error) {
	p := pki{dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p, fmt.Errorf("create pki dir: %w", err)
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "flowlens-lab-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	ca, caPriv, err := signCert(caTmpl, nil, nil)
	if err != nil {
		return p, err
	}
	serving := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now,
		NotAfter:     caTmpl.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{apiserverIP, serviceIP, net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
	}
	client := &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "flowlens-lab-admin", Organization: []string{"system:masters"}},
		NotBefore:    now,
		NotAfter:     caTmpl.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	files := []pemPair{{caCert, caKey, ca.Raw, caPriv}}
	for _, c := range []struct {
		tmpl      *x509.Certificate
		cert, key string
	}{{serving, apiserverCert, apiserverKey}, {client, adminCert, adminKey}} {
		leaf, priv, err := signCert(c.tmpl, ca, caPriv)
		if err != nil {
			return p, err
		}
		files = append(files, pemPair{c.cert, c.key, leaf.Raw, priv})
	}
	for _, f := range files {
		if err := writePEM(p.path(f.cert), "CERTIFICATE", f.der); err != nil {
			return p, err
		}
		if err := writeKey(p.path(f.key), f.priv); err != nil {
			return p, err
		}
	}
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, fmt.Errorf("generate service account key: %w", err)
	}
	return p, writeKey(p.path(saKey), sa)
}

// pemPair is a certificate and its key, to be written as two PEM files.
type pemPair struct {
	cert, key string
	der       []byte
	priv      *ecdsa.PrivateKey
}

// signCert creates a P-256 key and a certificate for it, signed by parent (self-signed when nil).
func signCert(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key for %s: %w", tmpl.Subject.CommonName, err)
	}
	if parent == nil {
		parent, parentKey = tmpl, priv
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &priv.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	return c, priv, nil
}

func writeKey(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return fmt.Errorf("encode key %s: %w", path, err)
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeKubeconfig writes a kubeconfig for server with the admin client certificate embedded.
func (p pki) writeKubeconfig(path, server string) error {
	ca, err := os.ReadFile(p.path(caCert))
	if err != nil {
		return fmt.Errorf("read CA: %w", err)
	}
	cert, err := os.ReadFile(p.path(adminCert))
	if err != nil {
		return fmt.Errorf("read admin certificate: %w", err)
	}
	key, err := os.ReadFile(p.path(adminKey))
	if err != nil {
		return fmt.Errorf("read admin key: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "admin"}
	cfg.CurrentContext = "lab"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
