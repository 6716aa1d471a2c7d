package agent

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flowlens/flowlens/filter"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// FlowLogFilter compiles --flow-log-allow/--flow-log-deny (each a
// FlowFilter in protojson, as `flowlens observe --print-raw-filters`
// prints); nil when neither is given.
func (c *Config) FlowLogFilter() (*filter.Filter, error) {
	allow, deny := c.FlowLogAllow, c.FlowLogDeny
	if len(allow)+len(deny) == 0 {
		return nil, nil
	}
	parse := func(flag string, in []string) ([]*flowlensv1.FlowFilter, error) {
		out := make([]*flowlensv1.FlowFilter, 0, len(in))
		for i, s := range in {
			f := &flowlensv1.FlowFilter{}
			if err := protojson.Unmarshal([]byte(s), f); err != nil {
				return nil, fmt.Errorf("%s #%d %q: %w", flag, i+1, s, err)
			}
			out = append(out, f)
		}
		return out, nil
	}
	a, err := parse("--flow-log-allow", allow)
	if err != nil {
		return nil, err
	}
	d, err := parse("--flow-log-deny", deny)
	if err != nil {
		return nil, err
	}
	f, err := filter.Compile(a, d)
	if err != nil {
		return nil, fmt.Errorf("--flow-log-allow/--flow-log-deny: %w", err)
	}
	return f, nil
}
