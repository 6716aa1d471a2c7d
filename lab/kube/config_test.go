package kube

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"
)

func TestCNIConflistIsFlannelsBridge(t *testing.T) {
	n := NodeState{Name: "node1", Index: 1, PodCIDR: "10.42.0.0/24", Dir: "/state/node1"}
	raw, err := cniConflist("fk01", n)
	require.NoError(t, err)
	var conf struct {
		Name    string           `json:"name"`
		Plugins []map[string]any `json:"plugins"`
	}
	require.NoError(t, json.Unmarshal(raw, &conf))
	assert.Equal(t, "fk01-node1-cbr0", conf.Name, "libcni's cache is machine-wide: the name carries the prefix")
	require.Len(t, conf.Plugins, 2)
	br := conf.Plugins[0]
	assert.Equal(t, "bridge", br["type"])
	assert.Equal(t, "cni0", br["bridge"])
	assert.Equal(t, true, br["hairpinMode"])
	assert.EqualValues(t, 1450, br["mtu"])
	ipam := br["ipam"].(map[string]any)
	assert.Equal(t, "/state/node1/cni/ipam", ipam["dataDir"], "IPAM state stays under the node's directory")
	assert.Equal(t, "portmap", conf.Plugins[1]["type"])
}

func TestSandboxNetNS(t *testing.T) {
	for _, tc := range []struct{ name, info, want string }{
		{"pod sandbox", `{"Spec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1234"}]}}}`, "/var/run/netns/cni-1234"},
		{"container joining the sandbox", `{"Spec":{"linux":{"namespaces":[{"type":"network","path":"/proc/42/ns/net"}]}}}`, ""},
		{"host network", `{"Spec":{"linux":{"namespaces":[{"type":"pid"}]}}}`, ""},
		{"garbage", `not json`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, sandboxNetNS(tc.info)) })
	}
}

func TestUnescapeMount(t *testing.T) {
	assert.Equal(t, "/a b/c", unescapeMount(`/a\040b/c`))
	assert.Equal(t, "/plain", unescapeMount("/plain"))
}

func TestPKIAndKubeconfig(t *testing.T) {
	dir := t.TempDir()
	p, err := writePKI(filepath.Join(dir, "pki"), apiserverIP.AsSlice(), kubeSvcIP.AsSlice())
	require.NoError(t, err)
	raw, err := os.ReadFile(p.path(apiserverCert))
	require.NoError(t, err)
	blk, _ := pem.Decode(raw)
	cert, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	caRaw, err := os.ReadFile(p.path(caCert))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caRaw))
	for _, name := range []string{"192.0.2.254", "10.43.0.1", "kubernetes.default.svc"} {
		_, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name})
		assert.NoError(t, err, "the serving certificate must be valid for %s", name)
	}
	assert.True(t, cert.IPAddresses[0].Equal(net.ParseIP("192.0.2.254")))

	kc := filepath.Join(dir, "kubeconfig")
	require.NoError(t, p.writeKubeconfig(kc, apiserverURL()))
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	require.NoError(t, err)
	assert.Equal(t, "https://192.0.2.254:6443", cfg.Host)
	assert.NotEmpty(t, cfg.CertData)
}
