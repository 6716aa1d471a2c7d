package manifest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const policyDoc = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: %s
  namespace: linkding
spec:
  podSelector: {}
  policyTypes: [Egress]
`

func TestDecode(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		pods     int
		policies int
		ns       int
		err      string
		origin   map[Key]Origin
	}{
		{name: "empty stream", in: ""},
		{name: "only comments and separators", in: "# hello\n---\n---\n# bye\n"},
		{
			name: "multi document with leading separator",
			in: "---\n" + strings.ReplaceAll(policyDoc, "%s", "a") + "---\n# comment only\n---\n" +
				strings.ReplaceAll(policyDoc, "%s", "b"),
			policies: 2,
			origin: map[Key]Origin{
				{Kind: "NetworkPolicy", Namespace: "linkding", Name: "a"}: {File: "f.yaml", Doc: 0, Item: -1},
				{Kind: "NetworkPolicy", Namespace: "linkding", Name: "b"}: {File: "f.yaml", Doc: 2, Item: -1},
			},
		},
		{
			name: "v1 List with mixed kinds",
			in: `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: linkding}
- apiVersion: v1
  kind: Pod
  metadata: {name: p, namespace: linkding}
  status: {podIP: 10.42.0.5}
`,
			pods: 1, ns: 1,
			origin: map[Key]Origin{
				{Kind: "Pod", Namespace: "linkding", Name: "p"}: {File: "f.yaml", Doc: 0, Item: 1},
			},
		},
		{
			name:     "typed list items without kind",
			in:       `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicyList","items":[{"metadata":{"name":"x","namespace":"a"},"spec":{"podSelector":{}}}]}`,
			policies: 1,
		},
		{name: "unknown kind", in: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n", err: `f.yaml doc 0: unknown kind "Deployment" (apiVersion "apps/v1")`},
		{name: "unknown field", in: "---\n# x\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {bogus: 1}\n", err: `f.yaml doc 1: Pod: unknown field "spec.bogus"`},
		{name: "field names are case-sensitive", in: "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nstatus: {podIp: 1.2.3.4}\n", err: `f.yaml doc 0: Pod: unknown field "status.podIp"`},
		{name: "JSON duplicate key", in: `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a","name":"b"}}`, err: `f.yaml doc 0: Namespace: duplicate field "metadata.name"`},
		{name: "flow-style YAML is not JSON", in: "{apiVersion: v1, kind: Namespace, metadata: {name: a}}", ns: 1},
		{name: "malformed yaml", in: "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n", err: "f.yaml doc 0: malformed YAML"},
		{name: "duplicate key", in: "apiVersion: v1\nkind: Pod\nkind: Pod\nmetadata: {name: x}\n", err: "f.yaml doc 0: malformed YAML"},
		{name: "missing kind", in: "apiVersion: v1\nmetadata: {name: x}\n", err: "f.yaml doc 0: missing apiVersion or kind"},
		{name: "scalar document", in: "hello\n", err: "f.yaml doc 0: document is not an object"},
		{name: "wrong item kind in typed list", in: `{"apiVersion":"v1","kind":"PodList","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}]}`, err: "f.yaml doc 0: item 0: v1/Namespace in a PodList"},
		{name: "list item unknown field", in: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: x}\n  extra: 1\n", err: `f.yaml doc 0: item 0: Namespace: unknown field "extra"`},
		{name: "missing name", in: "apiVersion: v1\nkind: Namespace\nmetadata: {}\n", err: "f.yaml doc 0: Namespace: metadata.name is empty"},
		{name: "list pod without namespace", in: "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: A0}\n", err: "f.yaml doc 0: item 0: Pod A0: metadata.namespace is empty"},
		{name: "policy without namespace", in: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelector: {}}\n", err: "f.yaml doc 0: NetworkPolicy x: metadata.namespace is empty"},
		{name: "duplicate object", in: strings.ReplaceAll(policyDoc, "%s", "a") + "---\n" + strings.ReplaceAll(policyDoc, "%s", "a"), err: "f.yaml doc 1: NetworkPolicy linkding/a already defined at f.yaml doc 0"},
		{name: "wrong apiVersion for kind", in: "apiVersion: networking.k8s.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: x}\n", err: `unknown kind "NetworkPolicy" (apiVersion "networking.k8s.io/v1beta1")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := Decode("f.yaml", strings.NewReader(tt.in))
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Len(t, o.Pods, tt.pods)
			assert.Len(t, o.NetworkPolicies, tt.policies)
			assert.Len(t, o.Namespaces, tt.ns)
			for k, want := range tt.origin {
				assert.Equal(t, want, o.Origins[k], k.String())
			}
		})
	}
}

func TestDecodeKeepsFields(t *testing.T) {
	o, err := Decode("f.yaml", strings.NewReader(`apiVersion: v1
kind: Pod
metadata:
  name: pg-1
  namespace: database
  labels: {app.kubernetes.io/name: postgresql}
spec:
  containers:
  - name: pg
    ports: [{name: postgres, containerPort: 5432}]
status:
  podIPs: [{ip: 10.42.0.7}]
`))
	require.NoError(t, err)
	require.Len(t, o.Pods, 1)
	p := o.Pods[0]
	assert.Equal(t, "postgresql", p.Labels["app.kubernetes.io/name"])
	assert.Equal(t, int32(5432), p.Spec.Containers[0].Ports[0].ContainerPort)
	assert.Equal(t, "10.42.0.7", p.Status.PodIPs[0].IP)
	assert.Equal(t, "f.yaml doc 0", o.Where("Pod", "database", "pg-1"))
	assert.Equal(t, "", o.Where("Pod", "database", "nope"))
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, body string) {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	write("a.yaml", strings.ReplaceAll(policyDoc, "%s", "a"))
	write("sub/b.yml", strings.ReplaceAll(policyDoc, "%s", "b"))
	write("sub/c.json", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"linkding"}}`)
	write("sub/notes.txt", "not a manifest")
	write("kustomization.yaml", "resources: [a.yaml]\n")
	write(".git/x.yaml", "garbage: [")

	o, err := Load(dir)
	require.NoError(t, err)
	assert.Len(t, o.NetworkPolicies, 2)
	assert.Len(t, o.Namespaces, 1)
	assert.Equal(t, filepath.Join(dir, "sub/b.yml")+" doc 0", o.Where("NetworkPolicy", "linkding", "b"))

	// The same object in two files is reported with both places.
	write("z.yaml", strings.ReplaceAll(policyDoc, "%s", "a"))
	_, err = Load(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "z.yaml doc 0: NetworkPolicy linkding/a already defined at "+filepath.Join(dir, "a.yaml")+" doc 0")

	_, err = Load(filepath.Join(dir, "missing"))
	require.Error(t, err)

	// An explicitly named file is read whatever its name.
	_, err = Load(filepath.Join(dir, "sub/notes.txt"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "notes.txt doc 0")
}

func TestSplitDocuments(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"a: 1\n", []string{"a: 1\n"}, false},
		{"---\na: 1\n---\nb: 2", []string{"---\na: 1\n", "b: 2\n"}, false}, // the reader keeps a leading separator
		{"---\n---\n# c\n", []string{"---\n", "# c\n"}, false},
		{"a: 1\n---\n", []string{"a: 1\n"}, false},
		{"a: 1\n--- # c\nb: 2\n", []string{"a: 1\n", "b: 2\n"}, false},
		{"a: '---'\n----x: 1\n", nil, true}, // kubectl's reader takes "----x" for a bad separator
		{"# c\n---\na: 1\n", []string{"a: 1\n"}, false},
		{"a: 1\n---\n# only a comment\n---\nb: 2\n", []string{"a: 1\n", "# only a comment\n", "b: 2\n"}, false},
	}
	for _, tt := range tests {
		docs, err := SplitDocuments([]byte(tt.in))
		if tt.wantErr {
			assert.Error(t, err, "%q", tt.in)
			continue
		}
		require.NoError(t, err, "%q", tt.in)
		var got []string
		for _, d := range docs {
			got = append(got, string(d))
		}
		assert.Equal(t, tt.want, got, "%q", tt.in)
	}
}

// FuzzDecode: a rejected input's error names the document; an accepted
// one decodes to objects that each have an origin, and that decode again to
// the same objects when written back out as JSON (parse, serialise, parse
// is stable).
func FuzzDecode(f *testing.F) {
	f.Add(strings.ReplaceAll(policyDoc, "%s", "a"))
	f.Add("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: x}}\n")
	f.Add("---\n---\n# c\n")
	f.Add(`{"apiVersion":"v1","kind":"PodList","items":[{}]}`)
	f.Fuzz(func(t *testing.T, in string) {
		o, err := Decode("fuzz.yaml", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml doc ") {
				t.Fatalf("error does not name the document: %v", err)
			}
			return
		}
		if o == nil {
			t.Fatal("nil objects without error")
		}
		docs := reencode(t, o)
		if len(o.Origins) != len(docs) {
			t.Fatalf("%d objects but %d origins", len(docs), len(o.Origins))
		}
		again, err := Decode("again.json", strings.NewReader(strings.Join(docs, "\n---\n")))
		if err != nil {
			t.Fatalf("decoded objects do not decode again: %v\ninput %q", err, in)
		}
		if a, b := reencode(t, again), docs; !assert.ObjectsAreEqual(a, b) {
			t.Fatalf("not stable:\n%v\n%v", a, b)
		}
	})
}

// reencode writes every object back as one JSON document, with its kind.
func reencode(t *testing.T, o *Objects) []string {
	var docs []string
	add := func(apiVersion, kind string, objs any) {
		v := reflect.ValueOf(objs)
		for i := range v.Len() {
			raw, err := json.Marshal(v.Index(i).Interface())
			require.NoError(t, err)
			var m map[string]any
			require.NoError(t, json.Unmarshal(raw, &m))
			m["apiVersion"], m["kind"] = apiVersion, kind
			raw, err = json.Marshal(m)
			require.NoError(t, err)
			docs = append(docs, string(raw))
		}
	}
	add("v1", "Namespace", o.Namespaces)
	add("v1", "Pod", o.Pods)
	add("v1", "Service", o.Services)
	add("discovery.k8s.io/v1", "EndpointSlice", o.EndpointSlices)
	add("v1", "Node", o.Nodes)
	add("networking.k8s.io/v1", "NetworkPolicy", o.NetworkPolicies)
	return docs
}
