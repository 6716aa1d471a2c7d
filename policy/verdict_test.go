package policy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

func TestSummary(t *testing.T) {
	ps := np("a", "default-deny-ingress", denyIngressA) + np("a", "default-deny-egress", denyEgressA) +
		np("a", "allow-web", allowIngress("    - namespaceSelector: {matchLabels: {team: blue}}")+"\n    ports: [{port: 80}]") +
		np("b", "eg", "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]")
	e, err := Compile(fixture(t), policies(t, ps))
	require.NoError(t, err)
	tests := []struct {
		q    Query
		want string
	}{
		{Query{Src: ip("b/client"), Dst: ip("a/db"), Port: 5432},
			"deny: a/db ingress isolated by a/default-deny-ingress, no rule allows b/client on 5432/TCP"},
		{Query{Src: ip("a/web"), Dst: ip("a/db"), Port: 5432, Protocol: corev1.ProtocolUDP},
			"deny: a/web egress isolated by a/default-deny-egress, no rule allows a/db on 5432/UDP; a/db ingress isolated by a/default-deny-ingress, no rule allows a/web on 5432/UDP"},
		{Query{Src: ip("b/client"), Dst: ip("a/web"), Port: 80},
			"allow: b/client egress allowed by b/eg rule 0; a/web ingress allowed by a/allow-web rule 0"},
		{Query{Src: ip("8.8.8.8"), Dst: ip("a/web"), Protocol: ProtocolICMP},
			"deny: a/web ingress isolated by a/allow-web, a/default-deny-ingress, no rule allows 8.8.8.8 on ICMP"},
		{Query{Src: ip("c/x"), Dst: ip("1.1.1.1"), Port: 53, Protocol: corev1.ProtocolUDP},
			"allow: no policy isolates c/x or 1.1.1.1"},
		{Query{Src: ip("c/x"), Dst: ip("b/web"), Port: 53},
			"allow: no policy isolates c/x or b/web"},
		{Query{Src: ip("b/web"), Dst: ip("c/x"), Port: 53},
			"allow: b/web egress allowed by b/eg rule 0; c/x ingress not isolated"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, e.Evaluate(tt.q).Summary())
	}
}

func TestProto(t *testing.T) {
	e, err := Compile(fixture(t), policies(t, np("a", "deny", denyIngressA)+np("a", "allow", allowIngress("    - podSelector: {}"))))
	require.NoError(t, err)
	pv := e.Evaluate(Query{Src: ip("a/client"), Dst: ip("a/web"), Port: 80}).Proto()
	assert.Equal(t, flowlensv1.IntendedVerdict_ALLOW, pv.Verdict)
	assert.True(t, pv.Ingress.Applicable)
	assert.True(t, pv.Ingress.Isolated)
	assert.True(t, pv.Ingress.Allowed)
	require.Len(t, pv.Ingress.IsolatedBy, 2)
	assert.Equal(t, int32(0), pv.Ingress.IsolatedBy[0].Rule, "no rule: left unset")
	raw, err := protojson.Marshal(pv.Ingress.IsolatedBy[0])
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "rule", "isolated_by names whole policies: no internal -1 in JSON")
	require.Len(t, pv.Ingress.AllowedBy, 1)
	assert.Equal(t, "allow", pv.Ingress.AllowedBy[0].Name)
	assert.Equal(t, int32(0), pv.Ingress.AllowedBy[0].Rule)
	assert.False(t, pv.Egress.Isolated)
	assert.Equal(t, flowlensv1.Mismatch_MISMATCH_UNSPECIFIED, pv.Mismatch, "left to the caller")
	assert.NotEmpty(t, pv.Summary)

	pv = e.Evaluate(Query{Src: ip("8.8.8.8"), Dst: ip("a/web"), Port: 80}).Proto()
	assert.Equal(t, flowlensv1.IntendedVerdict_DENY, pv.Verdict)
	assert.False(t, pv.Egress.Applicable)
	pv = e.Evaluate(Query{Src: ip("a/web"), Dst: ip("b/web"), Port: 80}).Proto()
	assert.Equal(t, flowlensv1.IntendedVerdict_NOT_ISOLATED, pv.Verdict)
}

func TestMismatchOf(t *testing.T) {
	pv := func(v flowlensv1.IntendedVerdict) *flowlensv1.PolicyVerdict {
		return &flowlensv1.PolicyVerdict{Verdict: v}
	}
	tests := []struct {
		kernel   flowlensv1.Verdict
		intended *flowlensv1.PolicyVerdict
		want     flowlensv1.Mismatch
	}{
		{flowlensv1.Verdict_DROPPED, pv(flowlensv1.IntendedVerdict_ALLOW), flowlensv1.Mismatch_UNEXPECTED_DROP},
		{flowlensv1.Verdict_DROPPED, pv(flowlensv1.IntendedVerdict_NOT_ISOLATED), flowlensv1.Mismatch_UNEXPECTED_DROP},
		{flowlensv1.Verdict_DROPPED, pv(flowlensv1.IntendedVerdict_DENY), flowlensv1.Mismatch_NONE},
		{flowlensv1.Verdict_FORWARDED, pv(flowlensv1.IntendedVerdict_DENY), flowlensv1.Mismatch_UNEXPECTED_ALLOW},
		{flowlensv1.Verdict_FORWARDED, pv(flowlensv1.IntendedVerdict_ALLOW), flowlensv1.Mismatch_NONE},
		{flowlensv1.Verdict_FORWARDED, pv(flowlensv1.IntendedVerdict_NOT_ISOLATED), flowlensv1.Mismatch_NONE},
		{flowlensv1.Verdict_FORWARDED, nil, flowlensv1.Mismatch_MISMATCH_UNSPECIFIED},
		{flowlensv1.Verdict_VERDICT_UNSPECIFIED, pv(flowlensv1.IntendedVerdict_DENY), flowlensv1.Mismatch_MISMATCH_UNSPECIFIED},
		{flowlensv1.Verdict_DROPPED, pv(flowlensv1.IntendedVerdict_INTENDED_VERDICT_UNSPECIFIED), flowlensv1.Mismatch_MISMATCH_UNSPECIFIED},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, MismatchOf(tt.kernel, tt.intended), "%v vs %v", tt.kernel, tt.intended)
	}
}

func TestLoadFilesNamesFileAndDocument(t *testing.T) {
	dir := t.TempDir()
	good := np("linkding", "default-deny", denyIngressA)
	bad := np("linkding", "allow-dns", "  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/33}}]")
	path := filepath.Join(dir, "allow-dns.yaml")
	require.NoError(t, os.WriteFile(path, []byte("# header\n"+good+"---\n# empty\n"+bad), 0o644))
	_, err := LoadFiles(dir)
	require.Error(t, err)
	assert.Equal(t, path+` doc 2: networkpolicy linkding/allow-dns: egress[0].to[0].ipBlock.cidr "10.0.0.0/33": invalid CIDR`, err.Error())

	require.NoError(t, os.WriteFile(path, []byte(good), 0o644))
	ps, err := LoadFiles(path)
	require.NoError(t, err)
	assert.Len(t, ps, 1)
}

func TestDiff(t *testing.T) {
	files := policies(t, np("a", "same", denyIngressA)+np("a", "gone", denyIngressA)+
		np("a", "defaulted", "  podSelector: {}\n  ingress:\n  - ports: [{port: 80}]")+
		np("a", "edited", denyIngressA))
	cluster := policies(t, np("a", "same", denyIngressA)+np("b", "new", denyIngressA)+
		np("a", "defaulted", "  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n  - ports: [{port: 80, protocol: TCP}]")+
		np("a", "edited", denyEgressA))
	cluster[0].ResourceVersion = "42"
	assert.Equal(t, []string{"changed a/edited", "removed a/gone", "added b/new"}, Diff(files, cluster))
	assert.Empty(t, Diff(files, files))
}
