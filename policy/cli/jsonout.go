package cli

import (
	"encoding/json"
	"strconv"
	"unsafe"

	"github.com/flowlens/flowlens/policy"
)

// appendVerdictJSON writes one eval/explain result object. The object is
// assembled by hand, not marshalled from a struct, because `policy eval`
// emits a million of them and reflection would dominate its run time; the
// shape is pinned by golden tests and a round-trip test through
// encoding/json. Every string in it, names included, goes through
// appendString.
func appendVerdictJSON(b []byte, src, dst string, v *policy.Verdict) []byte {
	return (fragments{}).appendVerdictJSON(b, src, dst, v)
}

// fragments caches the JSON of IsolatedBy lists. The engine shares one
// list per pod and direction across verdicts, so the list's address
// identifies it; a million results repeat a few thousand lists. Not safe
// for concurrent use: one per goroutine.
type fragments map[*policy.Ref][]byte

func (f fragments) isolatedBy(b []byte, refs []policy.Ref) []byte {
	if len(refs) == 0 {
		return b
	}
	key := unsafe.SliceData(refs)
	if f != nil {
		if frag, ok := f[key]; ok && len(frag) > 0 {
			return append(b, frag...)
		}
	}
	start := len(b)
	for i, r := range refs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRef(b, r)
	}
	if f != nil {
		f[key] = append([]byte(nil), b[start:]...)
	}
	return b
}

func (f fragments) appendVerdictJSON(b []byte, src, dst string, v *policy.Verdict) []byte {
	b = append(b, `{"src":`...)
	b = appendString(b, src)
	b = append(b, `,"dst":`...)
	b = appendString(b, dst)
	b = append(b, `,"port":`...)
	b = strconv.AppendUint(b, uint64(v.Query.Port), 10)
	b = append(b, `,"protocol":`...)
	b = appendString(b, string(v.Query.Protocol))
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, v.Allowed)
	b = append(b, `,"verdict":`...)
	b = appendString(b, v.Intended().String())
	b = append(b, `,"egress":`...)
	b = f.appendSide(b, &v.Egress)
	b = append(b, `,"ingress":`...)
	b = f.appendSide(b, &v.Ingress)
	b = append(b, `,"summary":`...)
	// The summary is built in place and quoted afterwards, so the usual
	// summary (nothing to escape) costs no copy.
	start := len(b)
	b = v.AppendSummary(append(b, '"'))
	if !plain(b[start+1:]) {
		return append(appendString(b[:start], string(b[start+1:])), '}')
	}
	return append(b, `"}`...)
}

func (f fragments) appendSide(b []byte, s *policy.Side) []byte {
	b = append(b, `{"applicable":`...)
	b = strconv.AppendBool(b, s.Applicable)
	b = append(b, `,"isolated":`...)
	b = strconv.AppendBool(b, s.Isolated)
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, s.Allowed)
	b = append(b, `,"isolatedBy":[`...)
	b = f.isolatedBy(b, s.IsolatedBy)
	b = append(b, `],"allowedBy":[`...)
	for i, r := range s.AllowedBy {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"policy":`...)
		b = appendRef(b, r)
		if r.Rule >= 0 {
			b = append(b, `,"rule":`...)
			b = strconv.AppendInt(b, int64(r.Rule), 10)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendRef appends "namespace/name" as a JSON string without building the
// joined string when there is nothing to escape.
func appendRef(b []byte, r policy.Ref) []byte {
	if plain(r.Namespace) && plain(r.Name) {
		return append(append(append(append(append(b, '"'), r.Namespace...), '/'), r.Name...), '"')
	}
	return appendString(b, r.Namespace+"/"+r.Name)
}

// appendString appends s as a JSON string. encoding/json is the one
// encoder: a string it would copy unchanged (printable ASCII without quote,
// backslash or the HTML characters it escapes, which is every Kubernetes
// name) is copied directly, anything else is marshalled. FuzzVerdictJSON
// holds both paths to json.Marshal's output.
func appendString(b []byte, s string) []byte {
	if plain(s) {
		return append(append(append(b, '"'), s...), '"')
	}
	q, err := json.Marshal(s)
	if err != nil { // cannot happen: every Go string marshals
		panic("marshal string: " + err.Error())
	}
	return append(b, q...)
}

// plain reports whether json.Marshal would write s between quotes as it is.
func plain[S ~string | ~[]byte](s S) bool {
	for i := 0; i < len(s); i++ {
		if !plainByte[s[i]] {
			return false
		}
	}
	return true
}

var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()
