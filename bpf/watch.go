package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Watch attaches to the matching veths and keeps the set current from
// netlink events, sends the key of each flow's first drop on drops (never
// blocking: the next flush reads it anyway), and on ctx cancellation
// detaches everything and closes the objects. The caller reads the flow
// table meanwhile and must be done with it before cancelling. A Capture
// watches once.
func (c *Capture) Watch(ctx context.Context, drops chan<- FlowKey) error {
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

	if err := c.attachGlobal(); err != nil {
		return err
	}

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

	rd, err := ringbuf.NewReader(c.objs.DropEvents)
	if err != nil {
		return fmt.Errorf("open drop_events ring buffer: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.readDrops(rd, drops) })
	defer wg.Wait()
	defer rd.Close()

	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return errors.New("link update channel closed")
			}
			c.onLink(u.Link, u.Header.Type == unix.RTM_DELLINK)
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
		c.setInterfaceName(uint32(attrs.Index), "")
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
	c.setInterfaceName(uint32(attrs.Index), attrs.Name)
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
