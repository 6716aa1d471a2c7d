package cli

import (
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/flowlens/flowlens/policy"
)

// appendVerdictJSON writes one eval/explain result object. It is written by
// hand, not with encoding/json, because `policy eval` emits a million of
// them and reflection would dominate its run time; the shape is pinned by
// golden tests and a round-trip test through encoding/json.
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
		b = append(append(append(append(append(b, '"'), r.Namespace...), '/'), r.Name...), '"')
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
	b = append(b, `,"protocol":"`...)
	b = append(b, v.Query.Protocol...)
	b = append(b, `","allowed":`...)
	b = strconv.AppendBool(b, v.Allowed)
	b = append(b, `,"verdict":"`...)
	b = append(b, v.Intended().String()...)
	b = append(b, `","egress":`...)
	b = f.appendSide(b, &v.Egress)
	b = append(b, `,"ingress":`...)
	b = f.appendSide(b, &v.Ingress)
	b = append(b, `,"summary":`...)
	b = append(b, '"')
	// The summary holds only namespace/pod/policy names, IPs and numbers:
	// nothing to escape.
	b = v.AppendSummary(b)
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
		b = append(append(append(append(append(b, `{"policy":"`...), r.Namespace...), '/'), r.Name...), `","rule":`...)
		b = strconv.AppendInt(b, int64(r.Rule), 10)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
