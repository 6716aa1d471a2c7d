package cli

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/policy"
)

// verdictJSON is what a consumer reads back from one eval/explain object.
type verdictJSON struct {
	Src, Dst, Protocol, Verdict, Summary string
	Egress, Ingress                      struct {
		IsolatedBy []string
		AllowedBy  []struct {
			Policy string
			Rule   *int
		}
	}
}

// namedVerdict is a deny whose every name (pods, policies) is given.
func namedVerdict(srcPod, dstPod, ns, name string) policy.Verdict {
	refs := []policy.Ref{{Namespace: ns, Name: name, Rule: -1}}
	return policy.Verdict{
		Query:  policy.Query{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Port: 80, Protocol: "TCP"},
		SrcPod: srcPod, DstPod: dstPod, Isolated: true,
		Egress:  policy.Side{Applicable: true, Isolated: true, Allowed: true, IsolatedBy: refs, AllowedBy: []policy.Ref{{Namespace: ns, Name: name, Rule: 2}}},
		Ingress: policy.Side{Applicable: true, Isolated: true, IsolatedBy: refs},
	}
}

// viaEncodingJSON is what encoding/json makes of s in a round trip: s itself
// unless s is not valid UTF-8.
func viaEncodingJSON(t testing.TB, s string) string {
	raw, err := json.Marshal(s)
	require.NoError(t, err)
	var back string
	require.NoError(t, json.Unmarshal(raw, &back))
	return back
}

func checkVerdictJSON(t testing.TB, src, dst, ns, name string, f fragments) {
	v := namedVerdict(src, dst, ns, name)
	// Twice through one cache: the second object comes from the cached
	// isolatedBy fragment.
	for range 2 {
		out := f.appendVerdictJSON(nil, src, dst, &v)
		require.True(t, json.Valid(out), "invalid JSON for names %q %q %q %q:\n%s", src, dst, ns, name, out)
		var got verdictJSON
		require.NoError(t, json.Unmarshal(out, &got))
		ref := viaEncodingJSON(t, ns+"/"+name)
		assert.Equal(t, viaEncodingJSON(t, src), got.Src)
		assert.Equal(t, viaEncodingJSON(t, dst), got.Dst)
		assert.Equal(t, viaEncodingJSON(t, v.Summary()), got.Summary)
		assert.Equal(t, []string{ref}, got.Egress.IsolatedBy)
		assert.Equal(t, []string{ref}, got.Ingress.IsolatedBy)
		require.Len(t, got.Egress.AllowedBy, 1)
		assert.Equal(t, ref, got.Egress.AllowedBy[0].Policy)
		assert.Equal(t, 2, *got.Egress.AllowedBy[0].Rule)
		assert.Equal(t, "TCP", got.Protocol)
		assert.Equal(t, "DENY", got.Verdict)
	}
}

// A policy named deny"all (the manifest loader does not police names) once
// broke every consumer of `policy eval -o json`.
func TestVerdictJSONEscapesNames(t *testing.T) {
	for _, names := range [][4]string{
		{"a/b", "c/d", "ns", "plain"},
		{"a/b", "c/d", "ns", `deny"all`},
		{`x\y/"z"`, "c/<d>&", `n"s`, "p\x00\n"},
		{"é/✓", "c/\u2028", "ns", "bad\xff"},
	} {
		checkVerdictJSON(t, names[0], names[1], names[2], names[3], fragments{})
	}
}

// FuzzVerdictJSON: whatever the names, the output parses and every name
// comes back as encoding/json would give it back.
func FuzzVerdictJSON(f *testing.F) {
	f.Add("linkding/linkding-0", "database/postgresql-cluster-1", "database", "default-deny-ingress")
	f.Add("a/b", "10.0.0.2", "ns", `deny"all`)
	f.Add(`a\b`, "c\x00d", "<ns>", "p&\xff\u2028")
	f.Fuzz(func(t *testing.T, src, dst, ns, name string) {
		checkVerdictJSON(t, src, dst, ns, name, fragments{})
	})
}
