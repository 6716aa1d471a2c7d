package bpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Event is one item of the capture's output: exactly one field is set.
type Event struct {
	Flow *flowlensv1.Flow
	Lost *flowlensv1.LostEvents
}

// Status values.
const (
	StatusVeth       = "veth"
	StatusDrops      = "drops"
	StatusAccepted   = "accepted"
	StatusInterfaces = "interfaces"

	acceptedNetfilter = "netfilter-link"
	acceptedInference = "delivery-inference"
)

// nfPriority runs nf_accept after the filter table (0), where NetworkPolicy
// verdicts are made, and before SNAT (100), which would hide pod addresses.
const nfPriority = 10

// Capture owns the loaded programs and maps of one network namespace: the
// one of the thread that called New.
type Capture struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	objs    flowlensObjects
	reasons DropReasons

	ns    netns.NsHandle
	nsIno uint64
	nl    *netlink.Handle

	// Run's goroutine owns these.
	attached map[int]*attachment
	ifNames  map[uint32]string
	tcx      bool // false once TCX proved unsupported (auto mode)
	rep      *reporter
	links    []link.Link // netfilter and tracepoint links

	mu     sync.Mutex // guards status
	status map[string]string
	// ready is set once Run has attached the global programs and every pod
	// veth that existed when it started.
	ready atomic.Bool

	closeOnce sync.Once
}

// New loads the programs into the kernel for the calling thread's network
// namespace. Nothing is attached until Run.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Capture, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("capture config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register capture metrics: %w", err)
	}
	reasons, err := LoadDropReasons()
	if err != nil {
		return nil, err
	}
	c := &Capture{
		cfg: cfg, log: log, metrics: m, reasons: reasons,
		attached: make(map[int]*attachment),
		ifNames:  make(map[uint32]string),
		tcx:      cfg.AttachMode != AttachTC,
		status: map[string]string{
			StatusVeth: "pending", StatusDrops: "pending", StatusAccepted: "pending", StatusInterfaces: "0",
		},
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if c.ns, err = netns.Get(); err != nil {
		return nil, fmt.Errorf("get network namespace: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(c.ns), &st); err != nil {
		c.ns.Close()
		return nil, fmt.Errorf("stat network namespace: %w", err)
	}
	c.nsIno = st.Ino
	if c.nl, err = netlink.NewHandleAt(c.ns); err != nil {
		c.ns.Close()
		return nil, fmt.Errorf("open netlink in network namespace: %w", err)
	}
	if err := c.load(); err != nil {
		c.nl.Close()
		c.ns.Close()
		return nil, err
	}
	return c, nil
}

func (c *Capture) load() error {
	spec, err := loadFlowlens()
	if err != nil {
		return fmt.Errorf("load bpf spec: %w", err)
	}
	if err := spec.Variables[flowlensVarNetnsIno].Set(uint32(c.nsIno)); err != nil {
		return fmt.Errorf("set netns_ino: %w", err)
	}
	spec.Maps[flowlensMapFlows].MaxEntries = uint32(c.cfg.FlowTableSize)
	spec.Maps[flowlensMapCtFlows].MaxEntries = uint32(c.cfg.FlowTableSize)
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			c.log.Error("bpf verifier rejected a program", "log", fmt.Sprintf("%+v", ve))
		}
		return fmt.Errorf("load bpf objects: %w", err)
	}
	for _, p := range c.cfg.WatchCIDRs {
		p = p.Masked()
		k := flowlensLpmKey{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
		if p.Addr().Is4() {
			k.Prefixlen += 96
		}
		if err := c.objs.WatchCidrs.Put(&k, uint8(1)); err != nil {
			c.objs.Close()
			return fmt.Errorf("add watch cidr %v: %w", p, err)
		}
	}
	return nil
}

// Status reports which kernel path each feature uses.
func (c *Capture) Status() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.status))
	for k, v := range c.status {
		out[k] = v
	}
	return out
}

func (c *Capture) setStatus(k, v string) {
	c.mu.Lock()
	c.status[k] = v
	c.mu.Unlock()
}

// Run attaches to the matching veths and keeps the set current from netlink
// events, reports flows every FlushInterval and drops at once, and on ctx
// cancellation flushes, detaches everything and closes the objects. A
// Capture runs once.
func (c *Capture) Run(ctx context.Context, out chan<- Event) error {
	// Attach calls act on the calling thread's network namespace; keep this
	// goroutine on a thread in ours.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, err := netns.Get()
	if err != nil {
		return fmt.Errorf("get network namespace: %w", err)
	}
	defer cur.Close()
	if !cur.Equal(c.ns) {
		if err := netns.Set(c.ns); err != nil {
			return fmt.Errorf("enter capture network namespace: %w", err)
		}
		defer netns.Set(cur) //nolint:errcheck // best effort on a locked thread
	}
	defer c.close()

	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	monoToWall := time.Now().UnixNano() - ts.Nano()

	if err := c.attachGlobal(); err != nil {
		return err
	}
	agg := newAggregator(c.cfg.NodeName, c.Status()[StatusAccepted] == acceptedInference,
		c.cfg.IdleTimeout, c.reasons, func(i uint32) string { return c.ifNames[i] }, monoToWall)
	c.rep = &reporter{agg: agg, table: kernelTable{&c.objs}, out: out, metrics: c.metrics, log: c.log}

	updates := make(chan netlink.LinkUpdate, 256)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		Namespace: &c.ns,
		ErrorCallback: func(err error) {
			if ctx.Err() == nil { // the socket errors out as it is closed
				c.log.Warn("netlink link subscription", "err", err)
			}
		},
	}); err != nil {
		return fmt.Errorf("subscribe to link updates: %w", err)
	}
	links, err := c.nl.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		c.onLink(l, false)
	}
	c.ready.Store(true)
	defer c.ready.Store(false)

	rd, err := ringbuf.NewReader(c.objs.DropEvents)
	if err != nil {
		return fmt.Errorf("open drop_events ring buffer: %w", err)
	}
	drops := make(chan FlowKey, 1024)
	var wg sync.WaitGroup
	wg.Go(func() { c.readDrops(rd, drops) })
	defer wg.Wait()
	defer rd.Close()

	tick := time.NewTicker(c.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.rep.flush(true)
			return nil
		case u, ok := <-updates:
			if !ok {
				return errors.New("link update channel closed")
			}
			c.onLink(u.Link, u.Header.Type == unix.RTM_DELLINK)
		case k := <-drops:
			c.rep.reportKey(&k)
		case <-tick.C:
			c.rep.flush(false)
		}
	}
}

// attachGlobal attaches the netfilter programs and the drop tracepoint.
// Neither is essential: a missing one degrades to the fallback in Status.
func (c *Capture) attachGlobal() error {
	if err := c.attachAccept(); err != nil {
		return err
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: c.objs.KfreeSkb})
	if err != nil {
		c.log.Warn("attach tp_btf/kfree_skb: drops will not be reported", "err", err)
		c.setStatus(StatusDrops, "none")
		return nil
	}
	c.links = append(c.links, l)
	c.setStatus(StatusDrops, "tp_btf/kfree_skb")
	return nil
}

// attachAccept attaches nf_accept after the filter table, unless told to
// infer; in auto mode a kernel without netfilter links degrades to
// inference, in netfilter mode that is an error.
func (c *Capture) attachAccept() error {
	if c.cfg.Accepted == AcceptedInference {
		c.setStatus(StatusAccepted, acceptedInference)
		return nil
	}
	accepted := acceptedNetfilter
	for _, pf := range []link.NetfilterProtocolFamily{link.NetfilterProtoIPv4, link.NetfilterProtoIPv6} {
		for _, hook := range []link.NetfilterInetHook{link.NetfilterInetForward, link.NetfilterInetLocalIn, link.NetfilterInetLocalOut} {
			l, err := link.AttachNetfilter(link.NetfilterOptions{
				Program: c.objs.NfAccept, ProtocolFamily: pf, Hook: hook, Priority: nfPriority,
			})
			if err != nil {
				c.log.Warn("attach netfilter link", "pf", pf, "hook", hook, "err", err)
				if pf == link.NetfilterProtoIPv4 {
					accepted = acceptedInference
				}
				continue
			}
			c.links = append(c.links, l)
		}
	}
	if accepted == acceptedInference && c.cfg.Accepted == AcceptedNetfilter {
		return fmt.Errorf("accepted mode netfilter: the kernel refused the IPv4 netfilter link (see the warnings above)")
	}
	c.setStatus(StatusAccepted, accepted)
	return nil
}

func (c *Capture) onLink(l netlink.Link, removed bool) {
	attrs := l.Attrs()
	if removed {
		delete(c.ifNames, uint32(attrs.Index))
		if a, ok := c.attached[attrs.Index]; ok {
			c.markPodIf(a.ifindex, false)
			if err := a.detach(c.nl); err != nil {
				c.log.Warn("detach removed interface", "interface", a.name, "err", err)
			}
			delete(c.attached, attrs.Index)
			c.log.Info("detached", "interface", a.name)
			c.updateAttachedStatus()
		}
		return
	}
	c.ifNames[uint32(attrs.Index)] = attrs.Name
	if l.Type() != "veth" || !matchInterface(c.cfg.Interfaces, attrs.Name) || !c.bridgePort(attrs) {
		return
	}
	if a, ok := c.attached[attrs.Index]; ok {
		a.name = attrs.Name
		return
	}
	a := &attachment{name: attrs.Name, ifindex: attrs.Index}
	if err := c.attach(a); err != nil {
		c.log.Warn("attach interface", "interface", attrs.Name, "err", err)
		return
	}
	c.attached[attrs.Index] = a
	c.markPodIf(a.ifindex, true)
	c.log.Info("attached", "interface", a.name, "mode", a.mode)
	c.updateAttachedStatus()
}

// bridgePort reports whether a veth is a port of a bridge (cni0): that is
// what makes it a pod's host-side veth. A veth that is not (a lab's or a
// VM's uplink, a routed veth) would show node or tunnel traffic as if a pod
// sent it. A veth enslaved after it appears is attached on the update.
func (c *Capture) bridgePort(attrs *netlink.LinkAttrs) bool {
	if attrs.MasterIndex == 0 {
		return false
	}
	m, err := c.nl.LinkByIndex(attrs.MasterIndex)
	if err != nil {
		return false
	}
	return m.Type() == "bridge"
}

func (c *Capture) attach(a *attachment) error {
	if c.tcx {
		links, err := attachTCX(a.ifindex, c.objs.TcFromPod, c.objs.TcToPod)
		switch {
		case err == nil:
			a.links, a.mode = links, "tcx"
			c.setStatus(StatusVeth, "tcx")
			return nil
		case errors.Is(err, ebpf.ErrNotSupported) && c.cfg.AttachMode == AttachAuto:
			c.log.Info("tcx not supported, falling back to tc clsact", "err", err)
			c.tcx = false
		default:
			return err
		}
	}
	if err := attachTC(c.nl, a, c.objs.TcFromPod, c.objs.TcToPod); err != nil {
		return err
	}
	a.mode = "tc"
	c.setStatus(StatusVeth, "tc")
	return nil
}

// markPodIf tells tc_to_pod that packets entering on this veth are counted
// by its tc_from_pod. Set only once the programs are attached and cleared
// before they are detached, so no packet is skipped uncounted.
func (c *Capture) markPodIf(ifindex int, on bool) {
	key := uint32(ifindex)
	var err error
	if on {
		err = c.objs.PodIfs.Put(key, uint8(1))
	} else if err = c.objs.PodIfs.Delete(key); errors.Is(err, ebpf.ErrKeyNotExist) {
		err = nil
	}
	if err != nil {
		c.log.Warn("updating pod interface map", "ifindex", ifindex, "err", err)
	}
}

func (c *Capture) updateAttachedStatus() {
	c.metrics.attached.Set(float64(len(c.attached)))
	c.setStatus(StatusInterfaces, strconv.Itoa(len(c.attached)))
}

func (c *Capture) readDrops(rd *ringbuf.Reader, drops chan<- FlowKey) {
	var rec ringbuf.Record
	var ev DropEvent
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				c.log.Warn("read drop_events", "err", err)
			}
			return
		}
		if err := DecodeDropEvent(rec.RawSample, &ev); err != nil {
			c.log.Warn("decode drop event", "err", err)
			continue
		}
		select {
		case drops <- ev.Key:
		default: // the next flush reports it
		}
	}
}

// Ready reports whether the programs are attached to the pod veths that
// existed when Run started (later ones follow from netlink events).
func (c *Capture) Ready() error {
	if !c.ready.Load() {
		return errors.New("capture: programs not yet attached to the pod interfaces")
	}
	return nil
}

// Close releases the kernel objects of a Capture whose Run was never
// called. Run does this itself; calling Close after Run is harmless.
func (c *Capture) Close() error {
	c.close()
	return nil
}

// close detaches everything Run attached and releases the kernel objects.
func (c *Capture) close() {
	c.closeOnce.Do(c.doClose)
}

func (c *Capture) doClose() {
	for idx, a := range c.attached {
		c.markPodIf(a.ifindex, false)
		if err := a.detach(c.nl); err != nil {
			c.log.Warn("detach interface", "interface", a.name, "err", err)
		}
		delete(c.attached, idx)
	}
	c.updateAttachedStatus()
	for _, l := range c.links {
		if err := l.Close(); err != nil && !errors.Is(err, syscall.EBADF) {
			c.log.Warn("close link", "err", err)
		}
	}
	c.links = nil
	if err := c.objs.Close(); err != nil {
		c.log.Warn("close bpf objects", "err", err)
	}
	c.nl.Close()
	c.ns.Close()
}

// programs returns the loaded programs (tests check they are unlinked).
func (c *Capture) programs() []*ebpf.Program {
	return []*ebpf.Program{c.objs.TcFromPod, c.objs.TcToPod, c.objs.NfAccept, c.objs.KfreeSkb}
}
