package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/flowlens/flowlens/policy"
)

// TestEvalKeepsOrderAcrossChunks: results are evaluated in parallel chunks
// but must come out in query order, each matching a direct Evaluate.
func TestEvalKeepsOrderAcrossChunks(t *testing.T) {
	in := inputs{cluster: []string{homelab + "/cluster.yaml"}, policies: []string{homelab + "/network-policies"}}
	e, err := in.engine()
	require.NoError(t, err)
	pods := e.Pods()
	var qs []string
	var want []string
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
		for _, port := range []uint16{53, 80, 443, 1337, 2283, 3000, 3003, 3100, 5432, 6379, 7946, 8000, 8080, 8443, 9000, 9090, 9093, 9187, 10250, 27017} {
			for _, src := range pods {
				for _, dst := range pods {
					qs = append(qs, fmt.Sprintf(`{"src":%q,"dst":%q,"port":%d,"protocol":%q}`, src, dst, port, proto))
					sa, _ := e.PodAddr(src)
					da, _ := e.PodAddr(dst)
					v := e.Evaluate(policy.Query{Src: sa, Dst: da, Port: port, Protocol: proto})
					want = append(want, string(appendVerdictText(nil, src, dst, &v)))
				}
			}
		}
	}
	require.Greater(t, len(qs), 3*4096, "enough queries for several chunks")
	path := filepath.Join(t.TempDir(), "q.json")
	require.NoError(t, os.WriteFile(path, []byte("["+strings.Join(qs, ",\n")+"]"), 0o644))
	out, _, err := run(t, append([]string{"eval", "--queries", path}, homelabFlags...)...)
	require.NoError(t, err)
	assert.Equal(t, strings.Join(want, ""), out)
}
