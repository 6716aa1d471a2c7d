package flowlog

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

type verdictOnly flowlensv1.Verdict

func (v verdictOnly) Match(f *flowlensv1.Flow) bool { return f.GetVerdict() == flowlensv1.Verdict(v) }

func sampleFlow(v flowlensv1.Verdict) *flowlensv1.Flow {
	return &flowlensv1.Flow{
		NodeName: "node1",
		Verdict:  v,
		DropReason: func() string {
			if v == flowlensv1.Verdict_DROPPED {
				return "NETFILTER_DROP"
			}
			return ""
		}(),
		Ip:       &flowlensv1.IP{Source: "10.42.0.10", Destination: "10.42.0.11"},
		L4:       &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{SourcePort: 40000, DestinationPort: 8080}}},
		Source:   &flowlensv1.Endpoint{Namespace: "demo", PodName: "frontend", Labels: []string{"app=frontend"}},
		Counters: &flowlensv1.Counters{Packets: 3, Bytes: 180},
	}
}

func TestWriteProtoNamesAndEnumNames(t *testing.T) {
	var out bytes.Buffer
	w, err := New(Config{Path: "-"}, &out)
	require.NoError(t, err)
	require.NoError(t, w.Write(sampleFlow(flowlensv1.Verdict_DROPPED)))
	require.NoError(t, w.Close())

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 1)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &m))
	assert.Equal(t, "DROPPED", m["verdict"])
	assert.Equal(t, "NETFILTER_DROP", m["drop_reason"])
	assert.Equal(t, "node1", m["node_name"])
	l4 := m["l4"].(map[string]any)["tcp"].(map[string]any)
	assert.EqualValues(t, 8080, l4["destination_port"])
	assert.Equal(t, "frontend", m["source"].(map[string]any)["pod_name"])
}

func TestFilterKeepsOnlyMatches(t *testing.T) {
	var out bytes.Buffer
	w, err := New(Config{Path: "-", Filter: verdictOnly(flowlensv1.Verdict_DROPPED)}, &out)
	require.NoError(t, err)
	require.NoError(t, w.Write(sampleFlow(flowlensv1.Verdict_FORWARDED)))
	require.NoError(t, w.Write(sampleFlow(flowlensv1.Verdict_DROPPED)))
	require.NoError(t, w.Close())
	assert.Equal(t, 1, strings.Count(out.String(), "\n"))
	assert.Contains(t, out.String(), `"DROPPED"`)
}

func TestFileRotationConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flows.log")
	w, err := New(Config{Path: path, MaxSizeMB: 1, MaxBackups: 2}, nil)
	require.NoError(t, err)
	for i := 0; i < 10; i++ {
		require.NoError(t, w.Write(sampleFlow(flowlensv1.Verdict_FORWARDED)))
	}
	require.NoError(t, w.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, 10, strings.Count(string(data), "\n"))
}

func TestBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"empty path":       {},
		"zero size":        {Path: "/tmp/x.log"},
		"negative backups": {Path: "/tmp/x.log", MaxSizeMB: 1, MaxBackups: -1},
		"unwritable":       {Path: "/proc/nonexistent/flows.log", MaxSizeMB: 1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(cfg, nil)
			assert.Error(t, err)
		})
	}
}
