package observe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// DefaultServer is where `kubectl port-forward` puts the agent by default.
const DefaultServer = "localhost:4280"

// connFlags are the connection flags shared by observe and status.
type connFlags struct {
	server        string
	timeout       time.Duration
	tls           bool
	tlsInsecure   bool
	tlsCAFiles    []string
	tlsCertFile   string
	tlsKeyFile    string
	tlsServerName string

	portForward   bool
	kubeconfig    string
	kubeContext   string
	kubeNamespace string
	agentPort     int
}

func (c *connFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.server, "server", DefaultServer, "address of the flowlens agent's gRPC API (host:port)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for the connection (and port-forward) to come up")
	fs.BoolVar(&c.tls, "tls", false, "use TLS to connect")
	fs.BoolVar(&c.tlsInsecure, "tls-allow-insecure", false, "do not verify the server's certificate")
	fs.StringSliceVar(&c.tlsCAFiles, "tls-ca-cert-files", nil, "PEM files of the CAs that sign the server certificate (default: system roots)")
	fs.StringVar(&c.tlsCertFile, "tls-client-cert-file", "", "client certificate for mTLS (PEM)")
	fs.StringVar(&c.tlsKeyFile, "tls-client-key-file", "", "client key for mTLS (PEM)")
	fs.StringVar(&c.tlsServerName, "tls-server-name", "", "server name to verify the certificate against (default: host of --server)")
	fs.BoolVarP(&c.portForward, "port-forward", "P", false, "find the agent pod(s) through the kubeconfig and port-forward to them")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig for --port-forward (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&c.kubeContext, "kube-context", "", "kubeconfig context for --port-forward")
	fs.StringVar(&c.kubeNamespace, "kube-namespace", "flowlens", "namespace of the agent pods for --port-forward")
	fs.IntVar(&c.agentPort, "agent-port", 4280, "gRPC port of the agent inside its pod for --port-forward")
}

// validate checks the connection flags without touching the network.
func (c *connFlags) validate() error {
	if !c.portForward {
		if _, _, err := net.SplitHostPort(c.server); err != nil {
			return fmt.Errorf("--server %q: want host:port", c.server)
		}
	}
	if (c.tlsCertFile == "") != (c.tlsKeyFile == "") {
		return errors.New("--tls-client-cert-file and --tls-client-key-file go together")
	}
	if !c.tls && (c.tlsInsecure || len(c.tlsCAFiles) > 0 || c.tlsCertFile != "" || c.tlsServerName != "") {
		return errors.New("TLS flags need --tls")
	}
	if c.agentPort < 1 || c.agentPort > 65535 {
		return fmt.Errorf("--agent-port %d: out of range 1-65535", c.agentPort)
	}
	return nil
}

func (c *connFlags) dialOptions() ([]grpc.DialOption, error) {
	if !c.tls {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.tlsServerName, InsecureSkipVerify: c.tlsInsecure} //nolint:gosec // opt-in flag
	if len(c.tlsCAFiles) > 0 {
		pool := x509.NewCertPool()
		for _, f := range c.tlsCAFiles {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca-cert-files: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca-cert-files %s: no PEM certificates", f)
			}
		}
		tc.RootCAs = pool
	}
	if c.tlsCertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.tlsCertFile, c.tlsKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client key pair: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}, nil
}

// target is one agent to talk to.
type target struct {
	node string // empty when not known (plain --server)
	addr string
}

// connect resolves the targets (port-forwarding when asked) and dials them.
// close releases connections and port-forwards.
func (c *connFlags) connect(ctx context.Context, nodes []string, stderr io.Writer) (conns []*grpc.ClientConn, targets []target, closeAll func(), err error) {
	var cleanups []func()
	closeAll = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	opts, err := c.dialOptions()
	if err != nil {
		return nil, nil, closeAll, err
	}
	if c.portForward {
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		fwd, stop, err := portForwardAgents(ctx, c, nodes, log)
		cleanups = append(cleanups, stop)
		if err != nil {
			return nil, nil, closeAll, err
		}
		targets = fwd
	} else {
		targets = []target{{addr: c.server}}
	}
	for _, t := range targets {
		conn, err := grpc.NewClient(t.addr, opts...)
		if err != nil {
			return nil, nil, closeAll, fmt.Errorf("connect to %s: %w", t.addr, err)
		}
		cleanups = append(cleanups, func() { conn.Close() })
		conns = append(conns, conn)
	}
	return conns, targets, closeAll, nil
}

// rpcError names the agent an RPC failed on. When the other end did not
// answer in HTTP/2 at all (an HTTP/1 server such as the agent's metrics
// port, a TLS port without --tls), gRPC reports a framing error that says
// nothing to a user: ask instead whether the address is the right one.
func rpcError(what string, t target, err error) error {
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable && strings.Contains(s.Message(), "server preface") {
		return fmt.Errorf("%s %s: no gRPC answer: is %s a flowlens agent's gRPC port? (the agent serves gRPC on 4280 by default, metrics on 9280; a TLS port needs --tls): %w", what, describe(t), t.addr, err)
	}
	return fmt.Errorf("%s %s: %w", what, describe(t), err)
}
