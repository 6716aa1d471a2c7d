package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/observe"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// DefaultListen is where `flowlens ui` serves the page: one port above the
// agent's 4280, on loopback (the page has no authentication).
const DefaultListen = "127.0.0.1:4281"

type options struct {
	listen  string
	backlog uint64
	conn    *observe.ConnFlags
	filters *observe.Filters
}

// NewCommand returns `ui`: connect to agents as `flowlens observe` does and
// serve the page on --listen.
func NewCommand(stdout, stderr io.Writer) *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve a web page of who talks to whom, what is dropped and what drifted",
		Long: `Serve a local web page drawing the flows of flowlens agents: a map of
namespaces and workloads with an edge per direction and port (green
forwarded, red dropped, marked where the kernel and the intended policy
disagree), a table of flows with the observe filters, the policy explanation
of a flow or edge, lost events and each agent's status.

It connects the way observe does (--server, the TLS flags, or -P to
port-forward to the agents). The filter flags narrow what is asked of the
agents; the page filters further.`,
		Example: `  flowlens ui -P
  flowlens ui --server localhost:4280 --listen 127.0.0.1:8080
  flowlens ui -P --node node1 --not --namespace kube-system`,
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
	fs.StringVar(&o.listen, "listen", DefaultListen, "address to serve the page on (host:port)")
	fs.Uint64Var(&o.backlog, "backlog", 2000, "stored flows to ask each agent for at start, before live ones")
	o.filters = observe.AddFilterFlags(fs)
	o.conn = observe.AddConnFlags(fs)
	return cmd
}

// validate checks every flag without touching the network.
func (o *options) validate() (cfg hubConfig, err error) {
	if cfg.Allow, cfg.Deny, err = o.filters.Lists(); err != nil {
		return cfg, err
	}
	if err := o.conn.Validate(); err != nil {
		return cfg, err
	}
	host, port, err := net.SplitHostPort(o.listen)
	if err != nil {
		return cfg, fmt.Errorf("--listen %q: want host:port", o.listen)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return cfg, fmt.Errorf("--listen %q: port must be a number 0-65535", o.listen)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return cfg, fmt.Errorf("--listen %q: host must be an IP address or localhost", o.listen)
	}
	cfg.Backlog = o.backlog
	return cfg, nil
}

func (o *options) run(ctx context.Context, stdout, stderr io.Writer) error {
	cfg, err := o.validate()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	agents, closeAll, err := o.conn.Connect(ctx, o.filters.Nodes(), stderr)
	if err != nil {
		return err
	}
	defer closeAll()
	lis, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if ip := lis.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		log.Warn("the page is served beyond this machine and has no authentication", "listen", lis.Addr().String())
	}
	sources := make([]source, len(agents))
	for i, a := range agents {
		sources[i] = source{name: a.Name, client: flowlensv1.NewObserverClient(a.Conn)}
	}
	fmt.Fprintf(stdout, "flowlens ui: http://%s/\n", lis.Addr())
	return serve(ctx, lis, newHub(sources, cfg, log))
}

// serve runs the hub and the HTTP server until ctx ends.
func serve(ctx context.Context, lis net.Listener, hub *flowHub) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: handler(hub), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hub.Run(ctx)
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		cancel()
		<-done
		return fmt.Errorf("serve page: %w", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	err := srv.Shutdown(sctx) // streams end with ctx (their BaseContext)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
