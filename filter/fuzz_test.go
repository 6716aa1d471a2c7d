package filter

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// FuzzFlowFilterJSON is the path of a JSON FlowFilter (the agent's
// --flow-log-allow/--flow-log-deny, a gRPC client's filter): protojson, then
// Compile. A filter Compile refuses is refused with a FieldError naming a
// proto field; one it accepts, written back out as JSON, parses to the same
// filter, compiles, and matches the same flows as an allow and as a deny.
func FuzzFlowFilterJSON(f *testing.F) {
	f.Add(`{"verdict":["DROPPED"]}`)
	f.Add(`{"source_ip":["10.0.0.0/8"],"destination_port":[53],"protocol":["udp"]}`)
	f.Add(`{"label":["app in (a,b)","!x"],"pod":["ns/"],"node_name":["worker-*"],"mismatch":["UNEXPECTED_DROP"]}`)
	f.Add(`{"drop_reason":["netfilter_drop"],"traffic_direction":["INGRESS"],"namespace":["linkding"]}`)
	flows := []*flowlensv1.Flow{dropFlow(), dnsFlow(), {}}
	f.Fuzz(func(t *testing.T, in string) {
		ff := &flowlensv1.FlowFilter{}
		if protojson.Unmarshal([]byte(in), ff) != nil {
			return
		}
		c, err := Compile([]*flowlensv1.FlowFilter{ff}, nil)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" || fe.Reason == "" || !strings.HasPrefix(err.Error(), "allowlist[0]: "+fe.Field) {
				t.Fatalf("error names no field: %v", err)
			}
			if !strings.Contains(in, strings.Split(fe.Field, "_")[0]) && !strings.Contains(strings.ToLower(in), strings.ToLower(strings.Split(fe.Field, "_")[0])) {
				t.Fatalf("error names field %q not in the input %q", fe.Field, in)
			}
			return
		}
		raw, err := protojson.Marshal(ff)
		if err != nil {
			t.Fatal(err)
		}
		back := &flowlensv1.FlowFilter{}
		if err := protojson.Unmarshal(raw, back); err != nil || !proto.Equal(ff, back) {
			t.Fatalf("round trip: %v\n%v\n%v", err, ff, back)
		}
		d, err := Compile(nil, []*flowlensv1.FlowFilter{back})
		if err != nil {
			t.Fatalf("accepted filter refused after a round trip: %v", err)
		}
		for i, fl := range flows {
			if c.Match(fl) == d.Match(fl) && !proto.Equal(ff, &flowlensv1.FlowFilter{}) {
				t.Fatalf("flow %d: allow and deny of the same filter agree (%v)", i, c.Match(fl))
			}
		}
	})
}
