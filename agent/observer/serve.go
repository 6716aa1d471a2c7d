package observer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// DefaultAddress keeps flows off the node's network: reach it through
// kubectl port-forward on the hostNetwork agent pod.
const DefaultAddress = "127.0.0.1:4280"

// gracePeriod is how long Serve waits for RPCs to finish on shutdown before
// closing connections.
const gracePeriod = 5 * time.Second

// Limits on what one connection may ask of the server. A GetFlowsRequest
// with every filter set is a few KiB; the streams a flowlens observe opens
// are one per node.
const (
	// MaxConcurrentStreams bounds the streams (followers) one connection
	// may hold open; each holds a reader over the ring.
	MaxConcurrentStreams = 64
	// MaxRecvMsgSize bounds a request message.
	MaxRecvMsgSize = 256 << 10
	// maxHeaderListSize bounds the request headers (metadata).
	maxHeaderListSize = 64 << 10
)

// ServeConfig configures the gRPC listener. TLS is on when TLSCert and TLSKey
// are set; clients must present a certificate signed by TLSClientCA when it is
// set (mTLS).
type ServeConfig struct {
	Address     string
	TLSCert     string
	TLSKey      string
	TLSClientCA string
}

// Serve listens on cfg.Address and serves srv until ctx ends.
func Serve(ctx context.Context, cfg ServeConfig, srv *Server, log *slog.Logger) error {
	addr := cfg.Address
	if addr == "" {
		addr = DefaultAddress
	}
	opts, err := cfg.serverOptions()
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return serve(ctx, lis, opts, srv, log)
}

// ServeListener is Serve on an existing listener (tests, socket activation).
func ServeListener(ctx context.Context, lis net.Listener, cfg ServeConfig, srv *Server, log *slog.Logger) error {
	opts, err := cfg.serverOptions()
	if err != nil {
		if cerr := lis.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close listener: %w", cerr))
		}
		return err
	}
	return serve(ctx, lis, opts, srv, log)
}

func serve(ctx context.Context, lis net.Listener, opts []grpc.ServerOption, srv *Server, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gs := grpc.NewServer(opts...)
	flowlensv1.RegisterObserverServer(gs, srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(flowlensv1.Observer_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	reflection.Register(gs)

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	log.Info("observer gRPC listening", "address", lis.Addr().String())

	select {
	case err := <-errc:
		srv.Stop()
		return fmt.Errorf("serve gRPC on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	hs.Shutdown() // NOT_SERVING to health watchers
	srv.Stop()    // end following streams so GracefulStop can finish
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(gracePeriod):
		log.Warn("graceful stop timed out, closing connections", "after", gracePeriod)
		gs.Stop()
		<-done
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve gRPC on %s: %w", lis.Addr(), err)
	}
	return nil
}

func (cfg ServeConfig) serverOptions() ([]grpc.ServerOption, error) {
	limits := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.MaxHeaderListSize(maxHeaderListSize),
	}
	creds, err := cfg.credentials()
	if err != nil || creds == nil {
		return limits, err
	}
	return append(limits, creds), nil
}

// credentials is the TLS option, or nil for plaintext.
func (cfg ServeConfig) credentials() (grpc.ServerOption, error) {
	if cfg.TLSCert == "" && cfg.TLSKey == "" {
		if cfg.TLSClientCA != "" {
			return nil, errors.New("tls client CA given without a server certificate and key")
		}
		return nil, nil
	}
	if cfg.TLSCert == "" || cfg.TLSKey == "" {
		return nil, errors.New("tls needs both a certificate and a key")
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load tls key pair %s, %s: %w", cfg.TLSCert, cfg.TLSKey, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("read tls client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls client CA %s: no PEM certificates", cfg.TLSClientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return grpc.Creds(credentials.NewTLS(tc)), nil
}
