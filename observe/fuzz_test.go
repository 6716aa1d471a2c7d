package observe

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/flowlens/flowlens/filter"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// FuzzFilterFlags parses command lines (arguments separated by newlines)
// into a GetFlowsRequest. A refused command line is refused with an error
// naming a flag; an accepted one yields filters the agent compiles, and
// --print-raw-filters writes them in a form that parses back to the same
// filters (what the user pastes into --flow-log-allow).
func FuzzFilterFlags(f *testing.F) {
	f.Add("--pod\nweb/\n--not\n--port\n53\n--verdict\nDROPPED")
	f.Add("-f\n--mismatch\nUNEXPECTED_DROP\n-o\njson")
	f.Add("--not\n--namespace\nkube-system\n--not\n--namespace\nmonitoring\n--last\n5")
	f.Add("--from-ip\n10.0.0.0/8\n--to-label\napp in (a,b)\n--drop-reason\nnetfilter_drop\n--node\nk3s-*")
	f.Add("--not\n--not")
	f.Add("--since\n5m\n--until\n2026-11-26T11:00:00Z\n--protocol\nicmp")
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\n")
		cmd, o := newObserveCommand(&bytes.Buffer{}, &bytes.Buffer{})
		o.now = func() time.Time { return fixedNow }
		err := cmd.ParseFlags(args)
		var req *flowlensv1.GetFlowsRequest
		if err == nil {
			req, err = o.request()
		}
		if errors.Is(err, pflag.ErrHelp) {
			return // -h: cobra prints the help
		}
		if err != nil {
			if !strings.Contains(err.Error(), "-") {
				t.Fatalf("error names no flag: %v (args %q)", err, args)
			}
			return
		}
		if _, err := filter.Compile(req.GetAllowlist(), req.GetDenylist()); err != nil {
			t.Fatalf("accepted flags give filters the agent refuses: %v (args %q)", err, args)
		}
		var out bytes.Buffer
		if err := printRawFilters(&out, req); err != nil {
			t.Fatal(err)
		}
		var lists [2][]*flowlensv1.FlowFilter
		cur := -1
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			switch {
			case l == "allowlist:":
				cur = 0
			case l == "denylist:":
				cur = 1
			case strings.HasPrefix(l, "  - '") && strings.HasSuffix(l, "'") && cur >= 0:
				ff := &flowlensv1.FlowFilter{}
				if err := protojson.Unmarshal([]byte(l[5:len(l)-1]), ff); err != nil {
					t.Fatalf("raw filter %q does not parse: %v", l, err)
				}
				lists[cur] = append(lists[cur], ff)
			case l == "":
			default:
				t.Fatalf("unexpected raw filter line %q", l)
			}
		}
		for i, want := range [][]*flowlensv1.FlowFilter{req.GetAllowlist(), req.GetDenylist()} {
			if len(want) != len(lists[i]) {
				t.Fatalf("list %d: %d filters printed, %d in the request", i, len(lists[i]), len(want))
			}
			for j := range want {
				if !proto.Equal(want[j], lists[i][j]) {
					t.Fatalf("list %d filter %d: printed %v, request %v", i, j, lists[i][j], want[j])
				}
			}
		}
	})
}
