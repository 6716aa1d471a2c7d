package observe

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlens/flowlens/agent/observer"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

var fixedNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// parse runs flag parsing of observe and builds the request.
func parse(t *testing.T, args ...string) (*flowlensv1.GetFlowsRequest, *observeOptions, error) {
	t.Helper()
	cmd, o := newObserveCommand(&bytes.Buffer{}, &bytes.Buffer{})
	o.now = func() time.Time { return fixedNow }
	if err := cmd.ParseFlags(args); err != nil {
		return nil, o, err
	}
	req, err := o.request()
	return req, o, err
}

func TestObserveFlags(t *testing.T) {
	type ff = flowlensv1.FlowFilter
	dropped := []flowlensv1.Verdict{flowlensv1.Verdict_DROPPED}
	tests := []struct {
		name string
		args []string
		want *flowlensv1.GetFlowsRequest
	}{
		{"default last 20", nil, &flowlensv1.GetFlowsRequest{Number: 20}},
		{"follow only new", []string{"-f"}, &flowlensv1.GetFlowsRequest{Follow: true}},
		{"last and follow", []string{"--last", "5", "-f"}, &flowlensv1.GetFlowsRequest{Number: 5, Follow: true}},
		{"first", []string{"--first", "3"}, &flowlensv1.GetFlowsRequest{Number: 3, First: true}},
		{"since duration", []string{"--since", "5m"}, &flowlensv1.GetFlowsRequest{Since: timestamppb.New(fixedNow.Add(-5 * time.Minute))}},
		{"since until rfc3339", []string{"--since", "2026-11-26T11:00:00Z", "--until", "2026-11-26T11:30:00+00:00"},
			&flowlensv1.GetFlowsRequest{Since: timestamppb.New(fixedNow.Add(-time.Hour)), Until: timestamppb.New(fixedNow.Add(-30 * time.Minute))}},
		{"same flag ORs, different flags AND", []string{"--to-namespace", "a", "--to-namespace", "b", "--verdict", "dropped"},
			&flowlensv1.GetFlowsRequest{Number: 20, Allowlist: []*ff{{DestinationNamespace: []string{"a", "b"}, Verdict: dropped}}}},
		{"every positive filter", []string{"--pod", "ns/p", "--from-pod", "a", "--to-pod", "b/c", "-n", "n1", "--from-namespace", "n2",
			"--to-namespace", "n3", "--ip", "10.0.0.1", "--from-ip", "10.0.0.0/8", "--to-ip", "fd00::/64", "-l", "app=x,tier in (a,b)",
			"--from-label", "a", "--to-label", "!b", "--port", "53", "--from-port", "1", "--to-port", "65535", "--protocol", "ICMP",
			"--verdict", "FORWARDED", "--drop-reason", "skb_drop_reason_netfilter_drop", "--traffic-direction", "ingress",
			"--node", "k3s-*", "--mismatch", "any"},
			&flowlensv1.GetFlowsRequest{Number: 20, Allowlist: []*ff{{
				Pod: []string{"ns/p"}, SourcePod: []string{"a"}, DestinationPod: []string{"b/c"},
				Namespace: []string{"n1"}, SourceNamespace: []string{"n2"}, DestinationNamespace: []string{"n3"},
				Ip: []string{"10.0.0.1"}, SourceIp: []string{"10.0.0.0/8"}, DestinationIp: []string{"fd00::/64"},
				Label: []string{"app=x,tier in (a,b)"}, SourceLabel: []string{"a"}, DestinationLabel: []string{"!b"},
				Port: []uint32{53}, SourcePort: []uint32{1}, DestinationPort: []uint32{65535}, Protocol: []string{"icmpv4"},
				Verdict: []flowlensv1.Verdict{flowlensv1.Verdict_FORWARDED}, DropReason: []string{"NETFILTER_DROP"},
				TrafficDirection: []flowlensv1.TrafficDirection{flowlensv1.TrafficDirection_INGRESS}, NodeName: []string{"k3s-*"},
				Mismatch: []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW},
			}}}},
		{"not negates only the next filter", []string{"--pod", "web/", "--not", "--port", "53", "--verdict", "DROPPED"},
			&flowlensv1.GetFlowsRequest{Number: 20, Allowlist: []*ff{{Pod: []string{"web/"}, Verdict: dropped}},
				Denylist: []*ff{{Port: []uint32{53}}}}},
		{"each not is its own deny filter", []string{"--not", "--namespace", "kube-system", "--not", "--namespace", "monitoring"},
			&flowlensv1.GetFlowsRequest{Number: 20, Denylist: []*ff{{Namespace: []string{"kube-system"}}, {Namespace: []string{"monitoring"}}}}},
		{"not with mismatch value", []string{"--not", "--mismatch=none"},
			&flowlensv1.GetFlowsRequest{Number: 20, Denylist: []*ff{{Mismatch: []flowlensv1.Mismatch{flowlensv1.Mismatch_NONE}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _, err := parse(t, tt.args...)
			require.NoError(t, err)
			assert.True(t, proto.Equal(tt.want, req), "want %v\ngot  %v", tt.want, req)
		})
	}
}

func TestObserveNodesForPortForward(t *testing.T) {
	_, o, err := parse(t, "--node", "a", "--not", "--node", "b", "--node", "c")
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "c"}, o.filters.nodes, "negated nodes are not port-forward targets")
}

func TestObserveBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--from-ip", "10.0.0.0/33"}, `invalid argument "10.0.0.0/33" for "--from-ip" flag: invalid CIDR`},
		{[]string{"--to-ip", "nope"}, `invalid argument "nope" for "--to-ip" flag: invalid IP address`},
		{[]string{"--ip", "1.2.3"}, `for "--ip" flag: invalid IP address`},
		{[]string{"--port", "70000"}, `invalid argument "70000" for "--port" flag: port out of range 1-65535`},
		{[]string{"--to-port", "0"}, `for "--to-port" flag: port out of range`},
		{[]string{"--from-port", "http"}, `invalid argument "http" for "--from-port" flag: invalid port`},
		{[]string{"--verdict", "BLOCKED"}, `invalid argument "BLOCKED" for "--verdict" flag: unknown verdict (want one of DROPPED, FORWARDED)`},
		{[]string{"--protocol", "http"}, `for "--protocol" flag: unknown protocol`},
		{[]string{"--traffic-direction", "up"}, `for "--traffic-direction" flag: unknown direction`},
		{[]string{"--mismatch=maybe"}, `for "--mismatch" flag: unknown mismatch`},
		{[]string{"--drop-reason", "no way"}, `for "--drop-reason" flag: invalid drop reason`},
		{[]string{"--label", "app in (x"}, `for "-l, --label" flag: invalid label selector`},
		{[]string{"--from-label", ""}, `for "--from-label" flag: empty label selector`},
		{[]string{"--pod", "/x"}, `for "--pod" flag: want "[namespace/]name"`},
		{[]string{"--to-pod", ""}, `for "--to-pod" flag: empty pod name`},
		{[]string{"--namespace", "a/b"}, `for "-n, --namespace" flag: invalid namespace`},
		{[]string{"--node", "[x"}, `for "--node" flag: invalid pattern`},
		{[]string{"--not", "--not", "--pod", "x"}, `--not given twice in a row`},
		{[]string{"--pod", "x", "--not"}, `--not must be followed by a filter flag`},
		{[]string{"--since", "yesterday"}, `--since "yesterday": want a duration (5m) or an RFC 3339 time`},
		{[]string{"--until", "-5m"}, `--until "-5m": duration must not be negative`},
		{[]string{"--since", "1m", "--until", "5m"}, `--until is before --since`},
		{[]string{"--last", "1", "--first", "1"}, `--last and --first cannot be combined`},
		{[]string{"--first", "1", "-f"}, `--first and --follow cannot be combined`},
		{[]string{"--until", "1m", "-f"}, `--until and --follow cannot be combined`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := parse(t, tt.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// countingListener counts accepted connections, to prove bad input fails
// before anything is dialled.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// startAgent serves an observer over ring on 127.0.0.1:0.
func startAgent(t *testing.T, ring *observer.Ring, node string) *countingListener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cl := &countingListener{Listener: lis}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- observer.ServeListener(ctx, cl, observer.ServeConfig{}, observer.NewServer(ring, nil, node, nil), nil)
	}()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return cl
}

func runCmd(t *testing.T, ctx context.Context, cmd func(stdout, stderr *bytes.Buffer) error) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := cmd(&stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func observeCmd(ctx context.Context, args ...string) func(stdout, stderr *bytes.Buffer) error {
	return func(stdout, stderr *bytes.Buffer) error {
		cmd, o := newObserveCommand(stdout, stderr)
		o.loc = time.UTC
		cmd.SetArgs(args)
		return cmd.ExecuteContext(ctx)
	}
}

func TestObserveEndToEnd(t *testing.T) {
	ring := observer.NewRing(64)
	for _, r := range sampleResponses() {
		ring.Write(r)
	}
	lis := startAgent(t, ring, "k3s-1")
	addr := lis.Addr().String()
	ctx := context.Background()

	out, _, err := runCmd(t, ctx, observeCmd(ctx, "--server", addr, "--verdict", "DROPPED", "--not", "--to-namespace", "kube-system"))
	require.NoError(t, err)
	assert.Equal(t, "Nov 26 12:00:00.123 k3s-1: homepage/homepage-7d9f-abcde:43210 -> linkding/linkding-0:9090 tcp [SYN] DROPPED (NETFILTER_DROP) "+
		"default-deny: linkding isolated by default-deny-ingress, no rule allows homepage\n"+
		"Nov 26 12:00:03.623 k3s-1: homepage/homepage-7d9f-abcde:* -> linkding/linkding-0:9090 tcp [SYN] DROPPED (NETFILTER_DROP) 4812 attempts "+
		"default-deny: linkding isolated by default-deny-ingress\nEVENTS LOST: CLIENT_QUEUE 1234 on k3s-1\n", out)

	out, _, err = runCmd(t, ctx, observeCmd(ctx, "--server", addr, "--last", "1", "--mismatch", "ANY", "-o", "jsonpb"))
	require.NoError(t, err)
	assert.Contains(t, out, `"mismatch":"UNEXPECTED_DROP"`)
	assert.Equal(t, 2, strings.Count(out, "\n"), "one flow and the lost-events record: %s", out)

	// Follow: a flow written after the command started is printed.
	fctx, cancel := context.WithCancel(ctx)
	go func() {
		time.Sleep(300 * time.Millisecond)
		ring.Write(sampleResponses()[3])
		time.Sleep(300 * time.Millisecond)
		cancel()
	}()
	out, _, err = runCmd(t, fctx, observeCmd(fctx, "--server", addr, "-f", "--to-ip", "192.168.0.0/16"))
	require.NoError(t, err, "an interrupted follow ends without error")
	assert.Contains(t, out, "-> 192.168.1.10:8006 (proxmox) tcp FORWARDED")

	// Bad filters fail before connecting.
	before := lis.accepted.Load()
	_, _, err = runCmd(t, ctx, observeCmd(ctx, "--server", addr, "--to-ip", "10.0.0.0/33"))
	assert.ErrorContains(t, err, `"--to-ip" flag: invalid CIDR`)
	_, _, err = runCmd(t, ctx, observeCmd(ctx, "--server", addr, "-o", "yaml"))
	assert.ErrorContains(t, err, `--output "yaml"`)
	_, _, err = runCmd(t, ctx, observeCmd(ctx, "--server", addr, "--color", "sometimes"))
	assert.ErrorContains(t, err, `--color "sometimes"`)
	_, _, err = runCmd(t, ctx, observeCmd(ctx, "--server", "nohostport"))
	assert.ErrorContains(t, err, `--server "nohostport": want host:port`)
	_, _, err = runCmd(t, ctx, observeCmd(ctx, "--server", addr, "--tls-server-name", "x"))
	assert.ErrorContains(t, err, "TLS flags need --tls")
	assert.Equal(t, before, lis.accepted.Load(), "nothing dialled for bad input")

	// --print-raw-filters prints and exits without connecting.
	out, _, err = runCmd(t, ctx, observeCmd(ctx, "--server", addr, "--to-namespace", "linkding", "--verdict", "DROPPED", "--not", "--port", "53", "--print-raw-filters"))
	require.NoError(t, err)
	assert.Equal(t, "allowlist:\n  - '{\"destination_namespace\":[\"linkding\"],\"verdict\":[\"DROPPED\"]}'\ndenylist:\n  - '{\"port\":[53]}'\n", out)
	assert.Equal(t, before, lis.accepted.Load(), "nothing dialled for --print-raw-filters")

	// status
	out, _, err = runCmd(t, ctx, func(stdout, stderr *bytes.Buffer) error {
		cmd := NewStatusCommand(stdout, stderr)
		cmd.SetArgs([]string{"--server", addr})
		return cmd.ExecuteContext(ctx)
	})
	require.NoError(t, err)
	assert.Contains(t, out, "Node:         k3s-1")
	assert.Contains(t, out, "Flow store:   8/64")
}
