package observe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// Output formats of -o.
var outputFormats = []string{"compact", "table", "json", "jsonpb"}

// Times are printed as the README shows them, time of day in milliseconds;
// a flow of another day (--since 48h, a follow across midnight) also gets
// its date, or the time alone would mislead.
const (
	timeLayout     = "15:04:05.000"
	dateTimeLayout = "Jan _2 15:04:05.000"
)

// printer writes GetFlowsResponses in one format.
type printer interface {
	print(*flowlensv1.GetFlowsResponse) error
	// flush writes anything buffered (the table aligns rows in batches).
	flush() error
}

type printOptions struct {
	format string
	color  bool
	loc    *time.Location
	now    func() time.Time // for "is it today"; time.Now when nil
}

// stamp formats an event time in o.loc.
func (o printOptions) stamp(t time.Time) string {
	now := time.Now
	if o.now != nil {
		now = o.now
	}
	t = t.In(o.loc)
	y, m, d := t.Date()
	ny, nm, nd := now().In(o.loc).Date()
	if y == ny && m == nm && d == nd {
		return t.Format(timeLayout)
	}
	return t.Format(dateTimeLayout)
}

func newPrinter(w io.Writer, o printOptions) (printer, error) {
	if o.loc == nil {
		o.loc = time.Local
	}
	switch o.format {
	case "compact", "":
		return &compactPrinter{w: w, o: o}, nil
	case "table":
		return newTablePrinter(w, o), nil
	case "json", "jsonpb":
		// Both use the proto field names, as the agent's flow log does, so
		// one jq or LogQL expression reads all three; jsonpb stays for
		// hubble's habit.
		return &jsonPrinter{w: w, m: protojson.MarshalOptions{UseProtoNames: true}}, nil
	}
	return nil, fmt.Errorf("unknown output format %q (want one of %s)", o.format, strings.Join(outputFormats, ", "))
}

// ANSI colours.
const (
	red    = "\x1b[31m"
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	bold   = "\x1b[1m"
	reset  = "\x1b[0m"
)

func paint(on bool, code, s string) string {
	if !on || s == "" {
		return s
	}
	return code + s + reset
}

// compactPrinter writes one line per flow, readable at a glance:
//
//	12:00:00.123 node-a: ns/pod:43210 -> ns/pod:9090 tcp DROPPED (NETFILTER_DROP) <policy summary>
type compactPrinter struct {
	w io.Writer
	o printOptions
}

func (p *compactPrinter) flush() error { return nil }

func (p *compactPrinter) print(r *flowlensv1.GetFlowsResponse) error {
	if le := r.GetLostEvents(); le != nil {
		_, err := fmt.Fprintln(p.w, paint(p.o.color, yellow, lostLine(r, le)))
		return err
	}
	fl := r.GetFlow()
	if fl == nil {
		return nil
	}
	var b strings.Builder
	b.WriteString(p.o.stamp(eventTime(r)))
	if n := nodeOf(r); n != "" {
		b.WriteString(" " + n)
	}
	b.WriteString(": ")
	src, dst := endpoints(fl)
	b.WriteString(src + " -> " + dst)
	if proto := protocolText(fl); proto != "" {
		b.WriteString(" " + proto)
	}
	if svc := serviceText(fl); svc != "" {
		b.WriteString(" (" + svc + ")")
	}
	b.WriteString(" " + verdictText(fl, p.o.color))
	if r := fl.GetDropReason(); r != "" {
		b.WriteString(" (" + r + ")")
	}
	if a := attemptsText(fl); a != "" {
		b.WriteString(" " + a)
	}
	if s := fl.GetPolicy().GetSummary(); s != "" {
		b.WriteString(" " + s)
	}
	if m := mismatchText(fl); m != "" {
		b.WriteString(" " + paint(p.o.color, bold+red, m))
	}
	if e := enforcerText(fl); e != "" {
		b.WriteString(" " + paint(p.o.color, yellow, e))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(p.w, b.String())
	return err
}

// lostLine is how any format but JSON shows lost events.
func lostLine(r *flowlensv1.GetFlowsResponse, le *flowlensv1.LostEvents) string {
	s := fmt.Sprintf("EVENTS LOST: %s %d", le.GetSource(), le.GetNumEventsLost())
	if n := r.GetNodeName(); n != "" {
		s += " on " + n
	}
	return s
}

func eventTime(r *flowlensv1.GetFlowsResponse) time.Time {
	if t := r.GetFlow().GetTime(); t != nil {
		return t.AsTime()
	}
	if t := r.GetTime(); t != nil {
		return t.AsTime()
	}
	return time.Time{}
}

func nodeOf(r *flowlensv1.GetFlowsResponse) string {
	if n := r.GetFlow().GetNodeName(); n != "" {
		return n
	}
	return r.GetNodeName()
}

func ports(fl *flowlensv1.Flow) (src, dst uint32) {
	l4 := fl.GetL4()
	switch {
	case l4.GetTcp() != nil:
		return l4.GetTcp().GetSourcePort(), l4.GetTcp().GetDestinationPort()
	case l4.GetUdp() != nil:
		return l4.GetUdp().GetSourcePort(), l4.GetUdp().GetDestinationPort()
	case l4.GetSctp() != nil:
		return l4.GetSctp().GetSourcePort(), l4.GetSctp().GetDestinationPort()
	}
	return 0, 0
}

// endpoints names both ends: "ns/pod:port" for pods, "ip:port" otherwise,
// with the endpoint's name (named CIDR, node) in parentheses. The source
// of aggregated connection attempts is "ns/pod:*": every source port.
func endpoints(fl *flowlensv1.Flow) (string, string) {
	sp, dp := ports(fl)
	src := endpointText(fl.GetSource(), fl.GetIp().GetSource(), sp)
	if fl.GetAggregatedAttempts() > 0 {
		src += ":*"
	}
	return src, endpointText(fl.GetDestination(), fl.GetIp().GetDestination(), dp)
}

// attemptsText counts the connection attempts an aggregated record sums.
func attemptsText(fl *flowlensv1.Flow) string {
	switch n := fl.GetAggregatedAttempts(); n {
	case 0:
		return ""
	case 1:
		return "1 attempt"
	default:
		return strconv.FormatUint(n, 10) + " attempts"
	}
}

func endpointText(ep *flowlensv1.Endpoint, ip string, port uint32) string {
	host := ip
	if ep.GetPodName() != "" {
		host = ep.GetPodName()
		if ep.GetNamespace() != "" {
			host = ep.GetNamespace() + "/" + host
		}
	}
	if host == "" {
		host = "?"
	}
	s := host
	if port != 0 {
		if host == ip {
			s = net.JoinHostPort(ip, strconv.FormatUint(uint64(port), 10))
		} else {
			s = host + ":" + strconv.FormatUint(uint64(port), 10)
		}
	}
	if ep.GetPodName() == "" {
		if n := ep.GetName(); n != "" {
			s += " (" + n + ")"
		} else if k := ep.GetKind(); k == flowlensv1.EndpointKind_HOST || k == flowlensv1.EndpointKind_WORLD {
			s += " (" + strings.ToLower(k.String()) + ")"
		}
	}
	return s
}

func protocolText(fl *flowlensv1.Flow) string {
	l4 := fl.GetL4()
	switch {
	case l4.GetTcp() != nil:
		if f := tcpFlags(fl.GetTcpFlags()); f != "" {
			return "tcp " + f
		}
		return "tcp"
	case l4.GetUdp() != nil:
		return "udp"
	case l4.GetSctp() != nil:
		return "sctp"
	case l4.GetIcmpv4() != nil:
		return fmt.Sprintf("icmpv4 %d/%d", l4.GetIcmpv4().GetType(), l4.GetIcmpv4().GetCode())
	case l4.GetIcmpv6() != nil:
		return fmt.Sprintf("icmpv6 %d/%d", l4.GetIcmpv6().GetType(), l4.GetIcmpv6().GetCode())
	}
	return ""
}

func tcpFlags(f *flowlensv1.TCPFlags) string {
	if f == nil {
		return ""
	}
	var s []string
	for _, x := range []struct {
		on   bool
		name string
	}{{f.GetSYN(), "SYN"}, {f.GetACK(), "ACK"}, {f.GetPSH(), "PSH"}, {f.GetFIN(), "FIN"}, {f.GetRST(), "RST"},
		{f.GetURG(), "URG"}, {f.GetECE(), "ECE"}, {f.GetCWR(), "CWR"}} {
		if x.on {
			s = append(s, x.name)
		}
	}
	if len(s) == 0 {
		return ""
	}
	return "[" + strings.Join(s, ",") + "]"
}

func serviceText(fl *flowlensv1.Flow) string {
	svc := fl.GetDestinationService()
	if svc.GetName() == "" {
		return ""
	}
	s := "svc " + svc.GetNamespace() + "/" + svc.GetName()
	if svc.GetPort() != 0 {
		s += ":" + strconv.FormatUint(uint64(svc.GetPort()), 10)
	}
	return s
}

func verdictText(fl *flowlensv1.Flow, color bool) string {
	switch v := fl.GetVerdict(); v {
	case flowlensv1.Verdict_DROPPED:
		return paint(color, red, v.String())
	case flowlensv1.Verdict_FORWARDED:
		return paint(color, green, v.String())
	default:
		return "UNKNOWN"
	}
}

// mismatchText is loud on purpose: a mismatch means the kernel did not do
// what the intended policy says.
func mismatchText(fl *flowlensv1.Flow) string {
	switch m := fl.GetPolicy().GetMismatch(); m {
	case flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW:
		return "!! MISMATCH " + m.String() + " !!"
	}
	return ""
}

// enforcerText marks a flow the policies deny but the enforcer profile
// predicts it lets through: classified, quietly, since no policy change
// would alter it (the summary says why).
func enforcerText(fl *flowlensv1.Flow) string {
	if fl.GetPolicy().GetMismatch() == flowlensv1.Mismatch_ENFORCER_ALLOW {
		return "[" + flowlensv1.Mismatch_ENFORCER_ALLOW.String() + "]"
	}
	return ""
}

// tablePrinter aligns columns. Rows are buffered until flush, which the
// caller does at the end and periodically while following; column widths
// only ever grow, so rows printed in later batches stay aligned with earlier
// ones unless a longer value appears. No colour: escape codes would count as
// cell width.
type tablePrinter struct {
	w      io.Writer
	o      printOptions
	rows   [][]string
	widths []int
	header bool
}

var tableHeader = []string{"TIME", "NODE", "SOURCE", "DESTINATION", "PROTOCOL", "VERDICT", "REASON", "POLICY"}

func newTablePrinter(w io.Writer, o printOptions) *tablePrinter {
	return &tablePrinter{w: w, o: o, widths: make([]int, len(tableHeader))}
}

func (p *tablePrinter) print(r *flowlensv1.GetFlowsResponse) error {
	ts := p.o.stamp(eventTime(r))
	if le := r.GetLostEvents(); le != nil {
		p.rows = append(p.rows, []string{ts, r.GetNodeName(), fmt.Sprintf("EVENTS LOST: %s %d", le.GetSource(), le.GetNumEventsLost())})
		return nil
	}
	fl := r.GetFlow()
	if fl == nil {
		return nil
	}
	src, dst := endpoints(fl)
	proto := protocolText(fl)
	if svc := serviceText(fl); svc != "" {
		proto += " (" + svc + ")"
	}
	policy := fl.GetPolicy().GetSummary()
	if m := mismatchText(fl) + enforcerText(fl); m != "" {
		policy = strings.TrimSpace(policy + " " + m)
	}
	reason := fl.GetDropReason()
	if a := attemptsText(fl); a != "" {
		reason += " (" + a + ")"
	}
	p.rows = append(p.rows, []string{ts, nodeOf(r), src, dst, proto, verdictText(fl, false), reason, policy})
	return nil
}

func (p *tablePrinter) flush() error {
	if len(p.rows) == 0 {
		return nil
	}
	rows := p.rows
	if !p.header {
		p.header = true
		rows = append([][]string{tableHeader}, rows...)
	}
	for _, row := range rows {
		// The lost-events row spans the flow columns: it does not widen them.
		if len(row) < len(tableHeader) {
			continue
		}
		for i, cell := range row {
			p.widths[i] = max(p.widths[i], len(cell))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		for i, cell := range row {
			b.WriteString(cell)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", p.widths[i]-len(cell)+2))
			}
		}
		line := strings.TrimRight(b.String(), " ")
		b.Reset()
		if _, err := io.WriteString(p.w, line+"\n"); err != nil {
			return err
		}
	}
	p.rows = p.rows[:0]
	return nil
}

// jsonPrinter writes each response as protojson on one line. protojson adds
// random whitespace on purpose to stop byte comparisons; compacting removes
// it so the output is stable.
type jsonPrinter struct {
	w   io.Writer
	m   protojson.MarshalOptions
	buf bytes.Buffer
}

func (p *jsonPrinter) flush() error { return nil }

func (p *jsonPrinter) print(r *flowlensv1.GetFlowsResponse) error {
	raw, err := p.m.Marshal(r)
	if err != nil {
		return fmt.Errorf("marshal flow: %w", err)
	}
	p.buf.Reset()
	if err := json.Compact(&p.buf, raw); err != nil {
		return fmt.Errorf("compact flow json: %w", err)
	}
	p.buf.WriteByte('\n')
	_, err = p.w.Write(p.buf.Bytes())
	return err
}
