package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// defaultLast is how many flows observe prints when given no range at all
// (as hubble observe does).
const defaultLast = 20

// mergeWindow bounds how long a quiet node can hold back the merged output
// of the others.
const mergeWindow = time.Second

type observeOptions struct {
	filters *filterFlags
	conn    connFlags

	last, first  uint64
	follow       bool
	since, until string
	output       string
	color        string
	printFilters bool

	now func() time.Time
	loc *time.Location
}

// NewObserveCommand returns `observe`: stream flows from one agent (or,
// with --port-forward, from the agents of several nodes merged by time).
func NewObserveCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd, _ := newObserveCommand(stdout, stderr)
	return cmd
}

func newObserveCommand(stdout, stderr io.Writer) (*cobra.Command, *observeOptions) {
	o := &observeOptions{filters: newFilterFlags(), now: time.Now, loc: time.Local}
	cmd := &cobra.Command{
		Use:   "observe",
		Short: "Show flows from flowlens agents, live or recent",
		Long: `Show the flows a flowlens agent has seen: accepted and dropped, with pod names,
the kernel's drop reason and the NetworkPolicy explanation.

Filter flags of the same kind OR together, different kinds AND together, and
--not negates the filter flag that follows it.

Without --port-forward, reach the agent with:
  kubectl -n flowlens port-forward pod/<agent-pod> 4280:4280`,
		Example: `  flowlens observe -P -f --verdict DROPPED --to-namespace linkding
  flowlens observe --last 100 --pod homepage/ --not --port 53
  flowlens observe --since 5m --mismatch ANY -o json`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true, // the main prints the error once
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), stdout, stderr)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.Uint64Var(&o.last, "last", 0, "show the last N flows (default 20 when no range is given)")
	fs.Uint64Var(&o.first, "first", 0, "show the first N flows still stored")
	fs.BoolVarP(&o.follow, "follow", "f", false, "keep printing new flows as they come")
	fs.StringVar(&o.since, "since", "", `only flows after this time: a duration ago ("5m") or RFC 3339`)
	fs.StringVar(&o.until, "until", "", `only flows before this time: a duration ago ("1m") or RFC 3339`)
	o.filters.addFlags(fs)
	fs.StringVarP(&o.output, "output", "o", "compact", "output format: "+strings.Join(outputFormats, ", "))
	fs.StringVar(&o.color, "color", "auto", "colour the output: auto, always, never")
	fs.BoolVar(&o.printFilters, "print-raw-filters", false, "print the allow and deny lists as protojson FlowFilters (for the agent's --flow-log-allow/--flow-log-deny) and exit")
	o.conn.addFlags(fs)
	return cmd, o
}

// request builds and validates the GetFlowsRequest; every error names the
// flag at fault.
func (o *observeOptions) request() (*flowlensv1.GetFlowsRequest, error) {
	allow, deny, err := o.filters.lists()
	if err != nil {
		return nil, err
	}
	req := &flowlensv1.GetFlowsRequest{Follow: o.follow, Allowlist: allow, Denylist: deny}
	switch {
	case o.last > 0 && o.first > 0:
		return nil, errors.New("--last and --first cannot be combined")
	case o.first > 0 && o.follow:
		return nil, errors.New("--first and --follow cannot be combined")
	case o.until != "" && o.follow:
		return nil, errors.New("--until and --follow cannot be combined")
	}
	now := o.now()
	if o.since != "" {
		if req.Since, err = parseTime("since", o.since, now); err != nil {
			return nil, err
		}
	}
	if o.until != "" {
		if req.Until, err = parseTime("until", o.until, now); err != nil {
			return nil, err
		}
	}
	if req.Since != nil && req.Until != nil && req.Until.AsTime().Before(req.Since.AsTime()) {
		return nil, errors.New("--until is before --since")
	}
	switch {
	case o.first > 0:
		req.Number, req.First = o.first, true
	case o.last > 0:
		req.Number = o.last
	case !o.follow && req.Since == nil && req.Until == nil:
		req.Number = defaultLast
	}
	return req, nil
}

// parseTime reads "5m" (that long ago) or an RFC 3339 time.
func parseTime(flag, v string, now time.Time) (*timestamppb.Timestamp, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return nil, fmt.Errorf("--%s %q: duration must not be negative", flag, v)
		}
		return timestamppb.New(now.Add(-d)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, fmt.Errorf("--%s %q: want a duration (5m) or an RFC 3339 time (2026-01-02T15:04:05Z)", flag, v)
	}
	return timestamppb.New(t), nil
}

func (o *observeOptions) printOptions(stdout io.Writer) (printOptions, error) {
	if !slices.Contains(outputFormats, o.output) {
		return printOptions{}, fmt.Errorf("--output %q: want one of %s", o.output, strings.Join(outputFormats, ", "))
	}
	color, err := useColor(o.color, stdout)
	if err != nil {
		return printOptions{}, err
	}
	return printOptions{format: o.output, color: color, loc: o.loc, now: o.now}, nil
}

func useColor(mode string, w io.Writer) (bool, error) {
	switch mode {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto":
		if os.Getenv("NO_COLOR") != "" {
			return false, nil
		}
		f, ok := w.(*os.File)
		return ok && term.IsTerminal(int(f.Fd())), nil
	}
	return false, fmt.Errorf("--color %q: want auto, always or never", mode)
}

func (o *observeOptions) run(ctx context.Context, stdout, stderr io.Writer) error {
	// Everything that can be checked offline is checked before connecting.
	req, err := o.request()
	if err != nil {
		return err
	}
	if o.printFilters {
		return printRawFilters(stdout, req)
	}
	popts, err := o.printOptions(stdout)
	if err != nil {
		return err
	}
	if err := o.conn.validate(); err != nil {
		return err
	}
	p, err := newPrinter(stdout, popts)
	if err != nil {
		return err
	}
	conns, targets, closeAll, err := o.conn.connect(ctx, o.filters.nodes, stderr)
	if err != nil {
		return err
	}
	defer closeAll()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var streams []recvFunc
	for i, conn := range conns {
		st, err := flowlensv1.NewObserverClient(conn).GetFlows(ctx, req)
		if err != nil {
			return rpcError("get flows from", targets[i], err)
		}
		t := targets[i]
		streams = append(streams, func() (*flowlensv1.GetFlowsResponse, error) {
			r, err := st.Recv()
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, rpcError("get flows from", t, err)
			}
			return r, err
		})
	}

	lp := &lockedPrinter{p: p}
	if o.follow {
		go lp.flushEvery(ctx, 500*time.Millisecond)
	}
	if o.follow {
		err = merge(ctx, streams, mergeWindow, lp.print)
	} else {
		err = printSorted(ctx, streams, lp.print)
	}
	if ferr := lp.flush(); err == nil {
		err = ferr
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil // interrupted by the user
	}
	return err
}

// printSorted prints a bounded answer (--last, --first, --since/--until
// without -f) in event time order. An agent sends what it stored in the
// order it stored it, which is flush order, not event time: the records of
// one flush come in flow-table order, and a drop reported at once by the
// ring buffer overtakes older flows still waiting for the flush.
func printSorted(ctx context.Context, streams []recvFunc, print func(*flowlensv1.GetFlowsResponse) error) error {
	var all []*flowlensv1.GetFlowsResponse
	err := merge(ctx, streams, mergeWindow, func(r *flowlensv1.GetFlowsResponse) error {
		all = append(all, r)
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortStableFunc(all, func(a, b *flowlensv1.GetFlowsResponse) int { return eventTime(a).Compare(eventTime(b)) })
	for _, r := range all {
		if err := print(r); err != nil {
			return err
		}
	}
	return nil
}

// printRawFilters writes the request's filters, one protojson FlowFilter per
// line, in a YAML shape (as hubble observe --print-raw-filters does). Field
// names are the proto names, as in -o json and the flow log.
func printRawFilters(w io.Writer, req *flowlensv1.GetFlowsRequest) error {
	for _, list := range []struct {
		name    string
		filters []*flowlensv1.FlowFilter
	}{{"allowlist", req.GetAllowlist()}, {"denylist", req.GetDenylist()}} {
		if len(list.filters) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s:\n", list.name)
		for _, f := range list.filters {
			raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(f)
			if err != nil {
				return fmt.Errorf("marshal filter: %w", err)
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err != nil {
				return fmt.Errorf("compact filter: %w", err)
			}
			if _, err := fmt.Fprintf(w, "  - '%s'\n", buf.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

func describe(t target) string {
	if t.node != "" {
		return "node " + t.node
	}
	return t.addr
}

// lockedPrinter lets a timer flush the table while the stream prints.
type lockedPrinter struct {
	mu sync.Mutex
	p  printer
}

func (l *lockedPrinter) print(r *flowlensv1.GetFlowsResponse) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.p.print(r)
}

func (l *lockedPrinter) flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.p.flush()
}

func (l *lockedPrinter) flushEvery(ctx context.Context, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = l.flush()
		}
	}
}
