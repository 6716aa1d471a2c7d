package flowlog

import (
	"math/bits"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// The flow log's encoder writes what protojson.MarshalOptions{UseProtoNames:
// true} writes for a Flow (same fields, names, order and value forms;
// compact spacing), about ten times faster: under a flood of drops,
// protojson's reflection was a third of the agent's CPU. It reports false
// for what it does not write exactly as protojson would (invalid UTF-8, a
// timestamp out of range), and the writer then uses protojson.
// TestEncoderMatchesProtojson keeps the two in step; a new field in the
// API must be added here.

type enc struct {
	b     []byte
	first bool // no field written yet in the current object
	ok    bool
}

func appendFlow(b []byte, fl *flowlensv1.Flow) ([]byte, bool) {
	e := enc{b: b, ok: true}
	e.open()
	e.timestamp("time", fl.Time)
	e.str("node_name", fl.NodeName)
	e.enum("verdict", int32(fl.Verdict), flowlensv1.Verdict_name)
	e.str("drop_reason", fl.DropReason)
	if ip := fl.Ip; ip != nil {
		e.object("ip")
		e.str("source", ip.Source)
		e.str("destination", ip.Destination)
		e.enum("ip_version", int32(ip.IpVersion), flowlensv1.IPVersion_name)
		e.str("destination_original", ip.DestinationOriginal)
		e.close()
	}
	e.layer4(fl.L4)
	e.endpoint("source", fl.Source)
	e.endpoint("destination", fl.Destination)
	if s := fl.DestinationService; s != nil {
		e.object("destination_service")
		e.str("namespace", s.Namespace)
		e.str("name", s.Name)
		e.uint32("port", s.Port)
		e.close()
	}
	e.enum("traffic_direction", int32(fl.TrafficDirection), flowlensv1.TrafficDirection_name)
	e.bool("is_reply", fl.IsReply)
	if c := fl.Counters; c != nil {
		e.object("counters")
		e.uint64("packets", c.Packets)
		e.uint64("bytes", c.Bytes)
		e.timestamp("first_seen", c.FirstSeen)
		e.timestamp("last_seen", c.LastSeen)
		e.close()
	}
	e.enum("observation_point", int32(fl.ObservationPoint), flowlensv1.ObservationPoint_name)
	if i := fl.Interface; i != nil {
		e.object("interface")
		e.uint32("index", i.Index)
		e.str("name", i.Name)
		e.close()
	}
	e.tcpFlags(fl.TcpFlags)
	e.policy(fl.Policy)
	e.str("uuid", fl.Uuid)
	e.uint64("aggregated_attempts", fl.AggregatedAttempts)
	e.close()
	return e.b, e.ok
}

func (e *enc) open() { e.b, e.first = append(e.b, '{'), true }

func (e *enc) close() { e.b, e.first = append(e.b, '}'), false }

// key starts a field.
func (e *enc) key(name string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.b = append(append(append(e.b, '"'), name...), '"', ':')
}

func (e *enc) object(name string) { e.key(name); e.open() }

func (e *enc) str(name, v string) {
	if v != "" {
		e.key(name)
		e.quote(v)
	}
}

func (e *enc) bool(name string, v bool) {
	if v {
		e.key(name)
		e.b = append(e.b, "true"...)
	}
}

func (e *enc) uint32(name string, v uint32) {
	if v != 0 {
		e.key(name)
		e.b = strconv.AppendUint(e.b, uint64(v), 10)
	}
}

func (e *enc) int32(name string, v int32) {
	if v != 0 {
		e.key(name)
		e.b = strconv.AppendInt(e.b, int64(v), 10)
	}
}

// uint64 is a JSON string in protojson.
func (e *enc) uint64(name string, v uint64) {
	if v != 0 {
		e.key(name)
		e.b = append(strconv.AppendUint(append(e.b, '"'), v, 10), '"')
	}
}

func (e *enc) enum(name string, v int32, names map[int32]string) {
	if v == 0 {
		return
	}
	e.key(name)
	if n, ok := names[v]; ok {
		e.b = append(append(append(e.b, '"'), n...), '"')
		return
	}
	e.b = strconv.AppendInt(e.b, int64(v), 10)
}

func (e *enc) strs(name string, v []string) { array(e, name, v, e.quote) }

// array writes a repeated field, which protojson leaves out when empty.
func array[T any](e *enc, name string, v []T, elem func(T)) {
	if len(v) == 0 {
		return
	}
	e.key(name)
	e.b = append(e.b, '[')
	for i, x := range v {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		elem(x)
	}
	e.b = append(e.b, ']')
}

// timestamp writes RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits.
func (e *enc) timestamp(name string, t *timestamppb.Timestamp) {
	if t == nil {
		return
	}
	const minSec, maxSec = -62135596800, 253402300799 // 0001-01-01, 9999-12-31
	if t.Seconds < minSec || t.Seconds > maxSec || t.Nanos < 0 || t.Nanos >= 1e9 {
		e.ok = false
		return
	}
	e.key(name)
	e.b = append(e.b, '"')
	e.b = time.Unix(t.Seconds, 0).UTC().AppendFormat(e.b, "2006-01-02T15:04:05")
	if n := t.Nanos; n != 0 {
		digits := 9
		for range 2 {
			if n%1000 != 0 {
				break
			}
			n /= 1000
			digits -= 3
		}
		var digitsBuf [9]byte // on the stack: no allocation per timestamp
		frac := strconv.AppendUint(digitsBuf[:0], uint64(n), 10)
		e.b = append(e.b, '.')
		for range digits - len(frac) {
			e.b = append(e.b, '0')
		}
		e.b = append(e.b, frac...)
	}
	e.b = append(e.b, 'Z', '"')
}

// quote escapes as protojson does: quote, backslash and control
// characters only.
func (e *enc) quote(s string) {
	if !utf8.ValidString(s) {
		e.ok = false
		return
	}
	e.b = append(e.b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= ' ' && c != '"' && c != '\\' {
			continue
		}
		e.b = append(e.b, s[start:i]...)
		start = i + 1
		e.b = append(e.b, '\\')
		switch c {
		case '"', '\\':
			e.b = append(e.b, c)
		case '\b':
			e.b = append(e.b, 'b')
		case '\f':
			e.b = append(e.b, 'f')
		case '\n':
			e.b = append(e.b, 'n')
		case '\r':
			e.b = append(e.b, 'r')
		case '\t':
			e.b = append(e.b, 't')
		default:
			e.b = append(e.b, 'u')
			e.b = append(e.b, "0000"[1+(bits.Len32(uint32(c))-1)/4:]...)
			e.b = strconv.AppendUint(e.b, uint64(c), 16)
		}
	}
	e.b = append(append(e.b, s[start:]...), '"')
}
