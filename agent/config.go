package agent

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/flowlens/flowlens/agent/observer"
	"github.com/flowlens/flowlens/bpf"
	"github.com/flowlens/flowlens/policy"
)

// Config is everything the agent is told on its command line. Each field's
// flag is registered by BindFlags, which documents accepted values and
// defaults; Validate checks them before anything is started.
type Config struct {
	NodeName string

	// Enrichment: one of ClusterFile (static YAML) or the Kubernetes API
	// (in-cluster, or Kubeconfig). NoKube disables the API.
	ClusterFile     string
	Kubeconfig      string
	NoKube          bool
	NamedCIDRs      []string
	DeletedPodGrace time.Duration

	// Policies is a file or directory of NetworkPolicy YAML that is the
	// intended set; empty means the cluster's own set is the intent.
	Policies             string
	PolicyReloadInterval time.Duration
	// ClusterPolicies is the set the enforcer applies, for an agent without
	// an API server (a lab, a GitOps preview): the status then says how it
	// differs from Policies.
	ClusterPolicies string
	// Enforcer is the enforcer profile (policy.EnforcerNames).
	Enforcer string

	// Capture.
	AttachMode   string
	AcceptedMode string
	Interfaces   []string
	// ExitInterfaces narrows the node's other interfaces tc_exit watches in
	// the egress mode.
	ExitInterfaces []string
	FlowTableSize  int
	DropRingSize   int
	WatchCIDRs     []string
	FlushInterval  time.Duration
	IdleTimeout    time.Duration
	QueueSize      int
	// ReportLinkLocal keeps records of link-local and multicast traffic
	// (IPv6 neighbour discovery, MLD, IGMP), which NetworkPolicy does not govern.
	ReportLinkLocal bool

	// Flow log.
	FlowLog           []string
	FlowLogMaxSizeMB  int
	FlowLogMaxBackups int
	FlowLogCompress   bool
	FlowLogAllow      []string
	FlowLogDeny       []string

	// gRPC.
	GRPCAddress string
	// GRPCInsecureListen allows a plaintext GRPCAddress that is not loopback.
	GRPCInsecureListen bool
	TLSCert            string
	TLSKey             string
	TLSClientCA        string
	RingCapacity       int

	// Metrics and health.
	MetricsAddress   string
	PprofAddress     string
	MetricsPodLabels bool

	LogLevel  string
	LogFormat string
}

// DefaultConfig returns the defaults the flags advertise.
func DefaultConfig() Config {
	return Config{
		NodeName:             os.Getenv("NODE_NAME"),
		DeletedPodGrace:      2 * time.Minute,
		PolicyReloadInterval: 10 * time.Second,
		Enforcer:             policy.DefaultEnforcer,
		AttachMode:           string(bpf.AttachAuto),
		AcceptedMode:         string(bpf.AcceptedAuto),
		Interfaces:           slices.Clone(bpf.DefaultInterfaces),
		ExitInterfaces:       slices.Clone(bpf.DefaultInterfaces),
		FlowTableSize:        bpf.DefaultFlowTableSize,
		DropRingSize:         bpf.DefaultDropRingSize,
		WatchCIDRs:           prefixStrings(bpf.DefaultWatchCIDRs),
		FlushInterval:        bpf.DefaultFlushInterval,
		IdleTimeout:          bpf.DefaultIdleTimeout,
		QueueSize:            DefaultQueueSize,
		FlowLogMaxSizeMB:     100,
		FlowLogMaxBackups:    5,
		GRPCAddress:          observer.DefaultAddress,
		RingCapacity:         observer.DefaultRingCapacity,
		MetricsAddress:       ":9280",
		LogLevel:             "info",
		LogFormat:            "text",
	}
}

// DefaultQueueSize is the default capacity of the channel between the
// capture and the pipeline.
const DefaultQueueSize = 8192

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// BindFlags registers the agent's flags on fs, writing into c.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.NodeName, "node-name", c.NodeName, "name of this node (default $NODE_NAME, then the hostname)")
	fs.StringVar(&c.ClusterFile, "cluster-file", c.ClusterFile, "YAML file or directory of Namespaces, Pods, Services, EndpointSlices and Nodes to name endpoints without a Kubernetes API")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig for the Kubernetes API (default: in-cluster config when running in a pod)")
	fs.BoolVar(&c.NoKube, "no-kube", c.NoKube, "do not use the Kubernetes API even when in a cluster")
	fs.StringSliceVar(&c.NamedCIDRs, "named-cidr", c.NamedCIDRs, "name=CIDR for addresses outside the cluster, e.g. proxmox=10.0.1.10/32 (repeatable)")
	fs.DurationVar(&c.DeletedPodGrace, "deleted-pod-grace", c.DeletedPodGrace, "how long a deleted pod's IP keeps resolving to it")
	fs.StringVar(&c.Policies, "policies", c.Policies, "file or directory of NetworkPolicy YAML taken as the intended set (default: the cluster's policies)")
	fs.DurationVar(&c.PolicyReloadInterval, "policy-reload-interval", c.PolicyReloadInterval, "how often --policies is checked for changes")
	fs.StringVar(&c.ClusterPolicies, "cluster-policies", c.ClusterPolicies, "file or directory of the NetworkPolicies the cluster applies, when there is no Kubernetes API: the status says how they differ from --policies")
	fs.StringVar(&c.Enforcer, "enforcer", c.Enforcer, "enforcer profile, what the enforcer does besides the spec: "+strings.Join(policy.EnforcerNames(), ", "))
	fs.StringVar(&c.AttachMode, "attach-mode", c.AttachMode, "how programs attach to veths: auto (TCX, falling back to tc), tcx, or tc")
	fs.StringVar(&c.AcceptedMode, "accepted-mode", c.AcceptedMode, "how packets are known to be past the policy layer: auto (egress, else inference), egress (seen leaving through a pod veth or another interface, tc egress; a netfilter BPF link on LOCAL_IN for packets to the node; Linux 6.4+), netfilter (netfilter BPF links after the filter table, FORWARD included: one hook more on every forwarded packet), or inference (not dropped by the next flush)")
	fs.StringSliceVar(&c.ExitInterfaces, "exit-interfaces", c.ExitInterfaces, "glob(s) narrowing which of the node's other interfaces (not loopback, bridges or observed pod veths: the overlay's such as flannel.1, the uplinks) confirm packets leaving through them as past policy in the egress mode; default: all of them")
	fs.StringSliceVar(&c.Interfaces, "interfaces", c.Interfaces, "glob(s) narrowing which pod veths (veth ports of a bridge such as cni0) are observed; default: all of them")
	fs.IntVar(&c.FlowTableSize, "flow-table-size", c.FlowTableSize, "entries in the in-kernel flow table")
	fs.IntVar(&c.DropRingSize, "drop-ring-size", c.DropRingSize, "bytes of the ring buffer that reports each flow's first drop at once (a power of two, at least a page); when full, the early report is counted as lost and the drop waits for the next flush")
	fs.StringSliceVar(&c.WatchCIDRs, "watch-cidr", c.WatchCIDRs, "pod and service CIDRs whose drops are reported")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.FlushInterval, "how often kernel counters are reported as flow records")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "flows idle this long are removed from the kernel table")
	fs.BoolVar(&c.ReportLinkLocal, "report-link-local", c.ReportLinkLocal, "also report link-local and multicast traffic (neighbour discovery, MLD, IGMP), which NetworkPolicy does not govern")
	fs.IntVar(&c.QueueSize, "queue-size", c.QueueSize, "records buffered between capture and the pipeline; overflow is counted as lost")
	fs.StringArrayVar(&c.FlowLog, "flow-log", c.FlowLog, "write flows as JSON lines to this file, or - for stdout; repeat for both (default: off)")
	fs.IntVar(&c.FlowLogMaxSizeMB, "flow-log-max-size-mb", c.FlowLogMaxSizeMB, "rotate the flow log file at this size")
	fs.IntVar(&c.FlowLogMaxBackups, "flow-log-max-backups", c.FlowLogMaxBackups, "rotated flow log files to keep")
	fs.BoolVar(&c.FlowLogCompress, "flow-log-compress", c.FlowLogCompress, "gzip rotated flow log files")
	fs.StringArrayVar(&c.FlowLogAllow, "flow-log-allow", c.FlowLogAllow, `JSON FlowFilter; only matching flows are logged (repeatable, any may match), e.g. '{"verdict":["DROPPED"]}'`)
	fs.StringArrayVar(&c.FlowLogDeny, "flow-log-deny", c.FlowLogDeny, "JSON FlowFilter; matching flows are not logged (repeatable)")
	fs.StringVar(&c.GRPCAddress, "grpc-address", c.GRPCAddress, "address of the Observer gRPC API (empty disables it)")
	fs.BoolVar(&c.GRPCInsecureListen, "grpc-insecure-listen", c.GRPCInsecureListen, "allow a plaintext (no --tls-cert) --grpc-address that is not loopback: anyone who reaches it reads every flow")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "TLS certificate for the gRPC API")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "TLS key for the gRPC API")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", c.TLSClientCA, "CA for client certificates (enables mTLS)")
	fs.IntVar(&c.RingCapacity, "ring-capacity", c.RingCapacity, "recent flows kept for GetFlows")
	fs.StringVar(&c.MetricsAddress, "metrics-address", c.MetricsAddress, "address for /metrics, /healthz and /readyz (empty disables it)")
	fs.StringVar(&c.PprofAddress, "pprof-address", c.PprofAddress, "loopback address for Go's /debug/pprof profiles, e.g. 127.0.0.1:6060 (default: off)")
	fs.BoolVar(&c.MetricsPodLabels, "metrics-pod-labels", c.MetricsPodLabels, "add a pod label to flow metrics (higher cardinality; series of deleted pods are removed)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
}

// Validate checks every setting and names the flag of the first bad one.
func (c *Config) Validate() error {
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--node-name not set and hostname unknown: %w", err)
		}
		c.NodeName = h
	}
	if err := c.validateCapture(); err != nil {
		return err
	}
	if c.QueueSize < 1 {
		return fmt.Errorf("--queue-size %d: must be positive", c.QueueSize)
	}
	if c.RingCapacity < 1 {
		return fmt.Errorf("--ring-capacity %d: must be positive", c.RingCapacity)
	}
	if c.DeletedPodGrace < 0 {
		return fmt.Errorf("--deleted-pod-grace %s: must not be negative", c.DeletedPodGrace)
	}
	if _, err := policy.EnforcerByName(c.Enforcer); err != nil {
		return fmt.Errorf("--enforcer: %w", err)
	}
	if c.ClusterPolicies != "" && c.Policies == "" {
		return fmt.Errorf("--cluster-policies needs --policies: it is compared with them")
	}
	if c.Policies != "" && c.PolicyReloadInterval < time.Second {
		return fmt.Errorf("--policy-reload-interval %s: want at least 1s", c.PolicyReloadInterval)
	}
	for _, p := range []struct{ flag, file string }{
		{"--cluster-file", c.ClusterFile}, {"--policies", c.Policies}, {"--cluster-policies", c.ClusterPolicies}, {"--kubeconfig", c.Kubeconfig},
		{"--tls-cert", c.TLSCert}, {"--tls-key", c.TLSKey}, {"--tls-client-ca", c.TLSClientCA},
	} {
		if p.file == "" {
			continue
		}
		if _, err := os.Stat(p.file); err != nil {
			return fmt.Errorf("%s %s: %w", p.flag, p.file, err)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		return fmt.Errorf("--tls-client-ca needs --tls-cert and --tls-key")
	}
	for _, a := range []struct{ flag, addr string }{{"--grpc-address", c.GRPCAddress}, {"--metrics-address", c.MetricsAddress}, {"--pprof-address", c.PprofAddress}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q: %w", a.flag, a.addr, err)
		}
	}
	if c.GRPCAddress != "" && c.TLSCert == "" && !c.GRPCInsecureListen && !loopback(c.GRPCAddress) {
		return fmt.Errorf("--grpc-address %s: not loopback and TLS is off, so anyone who reaches it reads every flow; "+
			"set --tls-cert/--tls-key, or --grpc-insecure-listen if that is meant", c.GRPCAddress)
	}
	if c.PprofAddress != "" && !loopback(c.PprofAddress) {
		return fmt.Errorf("--pprof-address %s: not loopback; profiles show the agent's command line and code paths, reach them with kubectl port-forward", c.PprofAddress)
	}
	seen := map[string]bool{}
	for _, p := range c.FlowLog {
		switch {
		case p == "":
			return fmt.Errorf("--flow-log \"\": give a file or - for stdout")
		case seen[p]:
			return fmt.Errorf("--flow-log %s given twice", p)
		case p != "-" && c.FlowLogMaxSizeMB < 1:
			return fmt.Errorf("--flow-log-max-size-mb %d: must be positive", c.FlowLogMaxSizeMB)
		}
		seen[p] = true
	}
	if _, err := c.FlowLogFilter(); err != nil {
		return err
	}
	if _, err := c.SlogLevel(); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	return nil
}

// validateCapture checks the capture flags against the bounds bpf owns
// (bpf.Config.Validate), naming the flag instead of the setting.
func (c *Config) validateCapture() error {
	switch bpf.AttachMode(c.AttachMode) {
	case bpf.AttachAuto, bpf.AttachTCX, bpf.AttachTC:
	default:
		return fmt.Errorf("--attach-mode %q: want auto, tcx or tc", c.AttachMode)
	}
	switch bpf.AcceptedMode(c.AcceptedMode) {
	case bpf.AcceptedAuto, bpf.AcceptedEgress, bpf.AcceptedNetfilter, bpf.AcceptedInference:
	default:
		return fmt.Errorf("--accepted-mode %q: want auto, egress, netfilter or inference", c.AcceptedMode)
	}
	for _, g := range c.Interfaces {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("--interfaces %q: bad glob: %w", g, err)
		}
	}
	for _, g := range c.ExitInterfaces {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("--exit-interfaces %q: bad glob: %w", g, err)
		}
	}
	if c.FlowTableSize < bpf.MinFlowTableSize || c.FlowTableSize > bpf.MaxFlowTableSize {
		return fmt.Errorf("--flow-table-size %d: want %d..%d", c.FlowTableSize, bpf.MinFlowTableSize, bpf.MaxFlowTableSize)
	}
	if !bpf.ValidDropRingSize(c.DropRingSize) {
		return fmt.Errorf("--drop-ring-size %d: want a power of two from the page size (%d) to %d bytes",
			c.DropRingSize, os.Getpagesize(), bpf.MaxDropRingSize)
	}
	if _, err := c.WatchPrefixes(); err != nil {
		return err
	}
	if c.FlushInterval < bpf.MinFlushInterval {
		return fmt.Errorf("--flush-interval %s: want at least %s", c.FlushInterval, bpf.MinFlushInterval)
	}
	if c.IdleTimeout < c.FlushInterval {
		return fmt.Errorf("--idle-timeout %s: must not be shorter than --flush-interval %s", c.IdleTimeout, c.FlushInterval)
	}
	return nil
}

// captureConfig is the bpf configuration the flags describe. Call it on a
// validated Config.
func (c *Config) captureConfig() bpf.Config {
	watch, _ := c.WatchPrefixes()
	return bpf.Config{
		AttachMode:     bpf.AttachMode(c.AttachMode),
		Accepted:       bpf.AcceptedMode(c.AcceptedMode),
		Interfaces:     c.Interfaces,
		ExitInterfaces: c.ExitInterfaces,
		FlowTableSize:  c.FlowTableSize,
		DropRingSize:   c.DropRingSize,
		WatchCIDRs:     watch,
		FlushInterval:  c.FlushInterval,
		IdleTimeout:    c.IdleTimeout,
		NodeName:       c.NodeName,
	}
}

// WatchPrefixes parses --watch-cidr.
func (c *Config) WatchPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(c.WatchCIDRs))
	for _, s := range c.WatchCIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("--watch-cidr %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// SlogLevel parses --log-level.
func (c *Config) SlogLevel() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}

// loopback reports whether addr (host:port) listens on loopback only. An
// empty host is every interface; a name other than localhost is not
// trusted to stay loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
