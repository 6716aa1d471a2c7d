package observe

import (
	"context"
	"io"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// This file lends observe's connection and filter flags to other commands
// (flowlens ui), so that every command reaches agents and reads filters the
// same way.

// ConnFlags are observe's connection flags: --server, the TLS flags and
// --port-forward with its kubeconfig flags.
type ConnFlags struct{ c connFlags }

// AddConnFlags registers the connection flags on fs.
func AddConnFlags(fs *pflag.FlagSet) *ConnFlags {
	c := &ConnFlags{}
	c.c.addFlags(fs)
	return c
}

// Validate checks the flags without touching the network.
func (c *ConnFlags) Validate() error { return c.c.validate() }

// Timeout is --timeout: how long the connection may take to come up.
func (c *ConnFlags) Timeout() time.Duration { return c.c.timeout }

// Agent is one connected agent.
type Agent struct {
	// Name is the agent's node when known (--port-forward), else its address.
	Name string
	Conn *grpc.ClientConn
}

// Connect dials the agents (port-forwarding to those on nodes when asked);
// closeAll releases connections and port-forwards.
func (c *ConnFlags) Connect(ctx context.Context, nodes []string, stderr io.Writer) (agents []Agent, closeAll func(), err error) {
	conns, targets, closeAll, err := c.c.connect(ctx, nodes, stderr)
	if err != nil {
		return nil, closeAll, err
	}
	for i, conn := range conns {
		agents = append(agents, Agent{Name: describe(targets[i]), Conn: conn})
	}
	return agents, closeAll, nil
}

// Filters are observe's filter flags (--namespace, --pod, --verdict,
// --mismatch, --port, --not, ...).
type Filters struct{ f *filterFlags }

// AddFilterFlags registers the filter flags on fs.
func AddFilterFlags(fs *pflag.FlagSet) *Filters {
	f := &Filters{f: newFilterFlags()}
	f.f.addFlags(fs)
	return f
}

// Lists returns the allow and deny lists of a GetFlowsRequest.
func (f *Filters) Lists() (allow, deny []*flowlensv1.FlowFilter, err error) { return f.f.lists() }

// Nodes are the positive --node values: with --port-forward they choose the
// agents to connect to.
func (f *Filters) Nodes() []string { return f.f.nodes }

// Ports are a flow's source and destination ports (0 for portless
// protocols), as the printers show them.
func Ports(fl *flowlensv1.Flow) (src, dst uint32) { return ports(fl) }
