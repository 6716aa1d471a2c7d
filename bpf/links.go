package bpf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Link watching timings. A burst of link changes larger than the netlink
// socket's buffer makes the kernel drop messages (ENOBUFS) and netlink close
// the update channel; the watcher then lists the links again, which is
// complete whatever was missed.
const (
	linkUpdateBuffer  = 4096
	attachRetryPeriod = time.Second
	resubscribeDelay  = 100 * time.Millisecond
)

// linkMetrics count what link watching recovered from.
type linkMetrics struct {
	resubscribes   prometheus.Counter
	attachFailures prometheus.Counter
}

func newLinkMetrics(reg prometheus.Registerer) (*linkMetrics, error) {
	m := &linkMetrics{
		resubscribes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowlens_link_resubscribes_total",
			Help: "Times the link update subscription broke (a burst of link changes) and the links were listed again.",
		}),
		attachFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowlens_attach_failures_total",
			Help: "Failed attaches to pod interfaces; each is retried while the interface exists.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.resubscribes, m.attachFailures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// watchLinks keeps the attachments matching the node's links until ctx is
// done: it subscribes to link updates, lists the links (attaching to new
// matching veths, detaching from ones that went away unseen), follows the
// updates, and starts over when the subscription breaks. Attaches that fail
// are logged and retried every attachRetryPeriod while the link exists.
// It owns c.attached and c.failed while it runs.
func (c *Capture) watchLinks(ctx context.Context) {
	// Attach calls act on the calling thread's network namespace. The
	// thread is never unlocked: it ends with this goroutine rather than
	// going back to the pool in another namespace.
	runtime.LockOSThread()
	if err := c.enterNS(); err != nil {
		c.log.Error("enter capture network namespace: no interface will be attached", "err", err)
		return
	}
	retry := time.NewTicker(attachRetryPeriod)
	defer retry.Stop()
	for ctx.Err() == nil {
		c.followLinks(ctx, retry.C)
		select {
		case <-ctx.Done():
		case <-time.After(resubscribeDelay):
		}
	}
}

// followLinks runs one subscription until it breaks or ctx is done.
func (c *Capture) followLinks(ctx context.Context, retry <-chan time.Time) {
	updates := make(chan netlink.LinkUpdate, linkUpdateBuffer)
	done := make(chan struct{})
	defer close(done) // closes the subscription's socket
	// No Namespace: this thread is in c.ns (watchLinks), and naming one
	// makes netlink setns(2) into it, which needs CAP_SYS_ADMIN.
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if ctx.Err() == nil { // the socket errors out as it is closed
				c.log.Warn("netlink link subscription", "err", err)
			}
		},
	}); err != nil {
		c.log.Warn("subscribe to link updates; retrying", "err", err)
		return
	}
	// Listed after subscribing, so no change falls between the two.
	if err := c.syncLinks(); err != nil {
		c.log.Warn("list links; retrying", "err", err)
		return
	}
	c.ready.Store(true) // attached to every pod veth that exists
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-updates:
			if !ok {
				c.linkMetrics.resubscribes.Inc()
				c.log.Warn("link updates overflowed (a burst of link changes); listing the links again")
				return
			}
			c.onLink(u.Link, u.Header.Type == unix.RTM_DELLINK)
		case <-c.retryC(retry):
			c.retryFailed()
		}
	}
}

// syncLinks makes the attachments match the current links: missed
// additions are attached, missed removals detached.
func (c *Capture) syncLinks() error {
	links, err := c.nl.LinkList()
	if err != nil {
		return err
	}
	present := make(map[int]bool, len(links))
	for _, l := range links {
		present[l.Attrs().Index] = true
		c.onLink(l, false)
	}
	for idx, a := range c.attached {
		if !present[idx] {
			c.detach(a)
		}
	}
	for idx, a := range c.exits {
		if !present[idx] {
			c.detachExit(a)
		}
	}
	for idx := range c.failed {
		if !present[idx] {
			delete(c.failed, idx)
		}
	}
	return nil
}

// retryC is the retry ticker's channel while an attach waits to be
// retried, else nil: a ticker nobody waits on does not wake the agent.
func (c *Capture) retryC(retry <-chan time.Time) <-chan time.Time {
	if len(c.failed) == 0 {
		return nil
	}
	return retry
}

func (c *Capture) retryFailed() {
	for idx, name := range c.failed {
		l, err := c.nl.LinkByIndex(idx)
		if err != nil {
			c.log.Info("interface gone before a retried attach", "interface", name, "err", err)
			delete(c.failed, idx)
			continue
		}
		c.onLink(l, false)
	}
}

// linkRole is what flowlens attaches to an interface.
type linkRole int

const (
	roleNone linkRole = iota
	rolePod           // a pod's host-side veth: tc_from_pod and tc_to_pod
	roleExit          // another way out of the node: tc_exit (egress mode)
)

// role names an interface's role. A pod veth the interface globs leave out
// is an exit: a packet delivered to it is past policy all the same.
func (c *Capture) role(l netlink.Link) linkRole {
	attrs := l.Attrs()
	if l.Type() == "veth" && c.bridgePort(attrs) && matchInterface(c.cfg.Interfaces, attrs.Name) {
		return rolePod
	}
	if !c.egress || attrs.Flags&net.FlagLoopback != 0 || l.Type() == "bridge" ||
		!matchInterface(c.cfg.ExitInterfaces, attrs.Name) {
		return roleNone
	}
	return roleExit
}

func (c *Capture) onLink(l netlink.Link, removed bool) {
	attrs := l.Attrs()
	if removed {
		c.setInterfaceName(uint32(attrs.Index), "")
		delete(c.failed, attrs.Index)
		if a, ok := c.attached[attrs.Index]; ok {
			c.detach(a)
		}
		if a, ok := c.exits[attrs.Index]; ok {
			c.detachExit(a)
		}
		return
	}
	c.setInterfaceName(uint32(attrs.Index), attrs.Name)
	if a, ok := c.attached[attrs.Index]; ok {
		a.name = attrs.Name // a pod veth stays one until it goes
		return
	}
	switch c.role(l) {
	case rolePod:
		// A CNI creates a veth and enslaves it after: it may have been
		// taken for an exit in between.
		if a, ok := c.exits[attrs.Index]; ok {
			c.detachExit(a)
		}
	case roleExit:
		c.onExit(attrs)
		return
	default:
		if a, ok := c.exits[attrs.Index]; ok {
			c.detachExit(a)
		}
		return
	}
	a := &attachment{name: attrs.Name, ifindex: attrs.Index}
	if err := c.attach(a); err != nil {
		_, again := c.failed[attrs.Index]
		c.failed[attrs.Index] = attrs.Name
		c.linkMetrics.attachFailures.Inc()
		c.log.Warn("attach interface; will retry", "interface", attrs.Name, "retry", again, "err", err)
		return
	}
	delete(c.failed, attrs.Index)
	c.attached[attrs.Index] = a
	c.markPodIf(a.ifindex, true)
	c.log.Info("attached", "interface", a.name, "mode", a.mode)
	c.updateAttachedStatus()
}

// detach removes one attachment (its link is gone or going).
func (c *Capture) detach(a *attachment) {
	c.markPodIf(a.ifindex, false)
	if err := a.detach(c.nl); err != nil {
		c.log.Warn("detach removed interface", "interface", a.name, "err", err)
	}
	delete(c.attached, a.ifindex)
	c.log.Info("detached", "interface", a.name)
	c.updateAttachedStatus()
}

// onExit attaches tc_exit to an exit interface, once.
func (c *Capture) onExit(attrs *netlink.LinkAttrs) {
	if a, ok := c.exits[attrs.Index]; ok {
		a.name = attrs.Name
		return
	}
	a := &attachment{name: attrs.Name, ifindex: attrs.Index}
	if err := c.attachExit(a); err != nil {
		_, again := c.failed[attrs.Index]
		c.failed[attrs.Index] = attrs.Name
		c.linkMetrics.attachFailures.Inc()
		c.log.Warn("attach exit interface; will retry", "interface", attrs.Name, "retry", again, "err", err)
		return
	}
	delete(c.failed, attrs.Index)
	c.exits[attrs.Index] = a
	c.log.Info("attached exit", "interface", a.name, "mode", a.mode)
	c.updateAttachedStatus()
}

// detachExit removes tc_exit from an interface (gone, or now a pod veth).
func (c *Capture) detachExit(a *attachment) {
	if err := a.detach(c.nl); err != nil {
		c.log.Warn("detach exit interface", "interface", a.name, "err", err)
	}
	delete(c.exits, a.ifindex)
	c.log.Info("detached exit", "interface", a.name)
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
	return c.attachProgs(a, c.objs.TcFromPod, c.objs.TcToPod)
}

func (c *Capture) attachExit(a *attachment) error {
	return c.attachProgs(a, nil, c.objs.TcExit)
}

// attachProgs attaches from (if any) on ingress and to on egress.
func (c *Capture) attachProgs(a *attachment, from, to *ebpf.Program) error {
	if c.tcx {
		links, err := attachTCX(a.ifindex, from, to)
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
	if err := attachTC(c.nl, a, from, to); err != nil {
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
	c.setStatus(StatusExits, strconv.Itoa(len(c.exits)))
}

// enterNS moves the calling (locked) thread into the capture's network
// namespace unless it is there already: the agent runs in the node's, and
// setns(2) needs CAP_SYS_ADMIN, which the DaemonSet does not grant.
func (c *Capture) enterNS() error {
	cur, err := netns.Get()
	if err != nil {
		return fmt.Errorf("get network namespace: %w", err)
	}
	defer cur.Close()
	if cur.Equal(c.ns) {
		return nil
	}
	return netns.Set(c.ns)
}
