package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseQueries(t *testing.T) {
	tests := []struct {
		in   string
		want []rawQuery
		err  string
	}{
		{in: " [ ] ", want: nil},
		{in: `[{"src":"a/b","dst":"1.2.3.4","port":80,"protocol":"TCP"}]`, want: []rawQuery{{Src: "a/b", Dst: "1.2.3.4", Port: 80, Protocol: "TCP"}}},
		{in: "[\n {\"port\" : 53 ,\n \"protocol\":\"UDP\", \"src\":\"x\",\"dst\":\"y\"} ,{}\n]\n", want: []rawQuery{{Src: "x", Dst: "y", Port: 53, Protocol: "UDP"}, {}}},
		{in: `[{"src":"a\/b\u0041","dst":"c"}]`, want: []rawQuery{{Src: "a/bA", Dst: "c"}}},
		{in: `{"src":"a"}`, err: "want a JSON array"},
		{in: `[{"src":"a"} {"src":"b"}]`, err: "after query 0: want , or ]"},
		{in: `[{"src":"a"}] x`, err: "trailing data"},
		{in: `[{"src":"a","src":"b"}]`, err: `query 0: duplicate field "src"`},
		{in: `[{"src":1}]`, err: "query 0: src: want a string"},
		{in: `[{"port":"80"}]`, err: "query 0: port: want an integer"},
		{in: `[{"port":70000}]`, err: "query 0: port: want an integer 0-65535"},
		{in: `[{"port":-1}]`, err: "query 0: port: want an integer"},
		{in: `[{"port":8.5}]`, err: "query 0: port: want an integer"},
		{in: `[{"src":{"a":1}}]`, err: "query 0: src: want a string"},
		{in: `[{"src":"abc`, err: "query 0: src: unterminated string"},
		{in: `[{"src":"a` + "\n" + `"}]`, err: "control character"},
		{in: `[{"src":"a"}`, err: "after query 0"},
		{in: `[`, err: "query 0: want an object"},
	}
	for _, tt := range tests {
		got, err := parseQueries("q.json", []byte(tt.in))
		if tt.err != "" {
			require.Error(t, err, tt.in)
			assert.Contains(t, err.Error(), tt.err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
}

// FuzzParseQueries: whatever the scanner accepts, encoding/json accepts
// with the same meaning, and written back out it parses to the same
// queries; what it rejects, it rejects naming the file.
func FuzzParseQueries(f *testing.F) {
	f.Add(`[{"src":"a/b","dst":"1.2.3.4","port":80,"protocol":"TCP"}]`)
	f.Add(`[{"src":"a\"b\\","dst":"\u00e9"},{}]`)
	f.Add(` [ ] `)
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parseQueries("f", []byte(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		var want []rawQuery
		dec := json.NewDecoder(bytes.NewReader([]byte(in)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("scanner accepted what encoding/json rejects (%v): %q", err, in)
		}
		if len(got) != len(want) || (len(got) > 0 && !assert.ObjectsAreEqual(got, want)) {
			t.Fatalf("scanner %v != encoding/json %v for %q", got, want, in)
		}
		out, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			out = []byte("[]")
		}
		again, err := parseQueries("again", out)
		if err != nil || len(again) != len(got) || (len(got) > 0 && !assert.ObjectsAreEqual(got, again)) {
			t.Fatalf("round trip: %v %v != %v (%s)", err, again, got, out)
		}
	})
}
