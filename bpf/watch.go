package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netns"
)

// Watch attaches to the matching veths and keeps the set current from
// netlink events, sends each flow's first drop with its counters on drops
// (never blocking: the next flush reads it anyway) within dropReadInterval, and on ctx cancellation
// detaches everything and closes the objects. The caller reads the flow
// table meanwhile and must be done with it before cancelling. A Capture
// watches once.
func (c *Capture) Watch(ctx context.Context, drops chan<- DropEvent) error {
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

	var wg sync.WaitGroup
	defer wg.Wait() // before close: the watcher owns the attachments until it returns
	ctx, stop := context.WithCancel(ctx)
	defer stop() // ends the watcher on every return
	wg.Go(func() { c.watchLinks(ctx) })
	defer c.ready.Store(false)

	rd, err := ringbuf.NewReader(c.objs.DropEvents)
	if err != nil {
		return fmt.Errorf("open drop_events ring buffer: %w", err)
	}
	var rdwg sync.WaitGroup
	rdwg.Go(func() { c.readDrops(rd, drops) })
	defer rdwg.Wait()
	defer rd.Close()

	<-ctx.Done()
	return nil
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
// infer: on FORWARD, LOCAL_IN and LOCAL_OUT in the netfilter mode, on
// LOCAL_IN alone in the egress mode (the tc programs see the rest where
// it leaves). In auto mode a kernel without netfilter links degrades to
// inference; when the mode was asked for, that is an error.
func (c *Capture) attachAccept() error {
	if c.cfg.Accepted == AcceptedInference {
		c.setStatus(StatusAccepted, acceptedInference)
		return nil
	}
	accepted := acceptedNetfilter
	hooks := []link.NetfilterInetHook{link.NetfilterInetForward, link.NetfilterInetLocalIn, link.NetfilterInetLocalOut}
	if c.egress {
		accepted = acceptedEgress
		hooks = []link.NetfilterInetHook{link.NetfilterInetLocalIn}
	}
	for _, pf := range []link.NetfilterProtocolFamily{link.NetfilterProtoIPv4, link.NetfilterProtoIPv6} {
		for _, hook := range hooks {
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
	if accepted == acceptedInference && c.cfg.Accepted != AcceptedAuto {
		return fmt.Errorf("accepted mode %s: the kernel refused the IPv4 netfilter link (see the warnings above)", c.cfg.Accepted)
	}
	c.setStatus(StatusAccepted, accepted)
	return nil
}

// dropReadInterval is how often the drop reader reads the ring while
// records come: kfree_skb wakes it only when the ring fills (see
// drop_events in maps.h), so this bounds how late a first drop is reported.
// After an interval without records the reader sleeps with no timer until
// a record wakes it (drop_reader_idle in config.h): an idle agent should
// not wake, since on a small node each wake-up takes a CPU from the
// traffic it observes. With its ten reads a second (and the Go runtime's
// wake-ups behind each) the agent woke 95 times a second during
// BenchmarkDatapath; without them, 7-10, its flushes.
const dropReadInterval = 100 * time.Millisecond

func (c *Capture) readDrops(rd *ringbuf.Reader, drops chan<- DropEvent) {
	var rec ringbuf.Record
	var ev DropEvent
	idle, read := false, false // read: a record since the last deadline
	rd.SetDeadline(time.Now().Add(dropReadInterval))
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				if !errors.Is(err, os.ErrClosed) {
					c.log.Warn("read drop_events", "err", err)
				}
				return
			}
			// Every record available was read before this.
			switch {
			case read:
				read = false
				rd.SetDeadline(time.Now().Add(dropReadInterval))
			case !idle && c.setDropReaderIdle(true):
				// Asked for a wake-up: look at the ring once more (an
				// expired deadline reads what it holds), so a record
				// reserved before kfree_skb could see the flag is read now.
				idle = true
				rd.SetDeadline(time.Now())
			case !idle:
				rd.SetDeadline(time.Now().Add(dropReadInterval))
			default:
				rd.SetDeadline(time.Time{})
			}
			continue
		}
		if idle {
			idle = false
			c.setDropReaderIdle(false) // kfree_skb clears it when it wakes us
			rd.SetDeadline(time.Now().Add(dropReadInterval))
		}
		read = true
		if err := DecodeDropEvent(rec.RawSample, &ev); err != nil {
			c.log.Warn("decode drop event", "err", err)
			continue
		}
		select {
		case drops <- ev:
		default: // the next flush reports it
		}
	}
}

// setDropReaderIdle sets drop_reader_idle, false when it cannot (the
// reader then keeps its timer). The store is followed by a full barrier (an
// atomic read-modify-write), so the ring is looked at only after kfree_skb
// can see the flag: it pairs with the exchange in drop_ring_wakeup.
func (c *Capture) setDropReaderIdle(idle bool) bool {
	var v uint64
	if idle {
		v = 1
	}
	if err := c.objs.DropReaderIdle.Set(v); err != nil {
		c.log.Warn("set drop_reader_idle; the drop reader keeps its timer", "err", err)
		return false
	}
	c.dropFence.Add(1)
	return true
}
