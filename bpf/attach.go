package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Legacy tc filter slot flowlens uses on each veth. An unusual priority
// keeps it clear of filters other tools add at the usual low numbers.
const (
	tcPriority = 0xc0de
	tcHandle   = 0xf1
)

// attachment is what flowlens added to one interface; detach removes
// exactly that.
type attachment struct {
	name    string
	ifindex int
	mode    string // "tcx" or "tc"
	links   []link.Link
	filters []*netlink.BpfFilter
	// qdisc is set only when flowlens created the clsact qdisc.
	qdisc *netlink.GenericQdisc
}

// attachTCX attaches from (unless nil) on ingress and to on egress.
func attachTCX(ifindex int, from, to *ebpf.Program) ([]link.Link, error) {
	var links []link.Link
	if from != nil {
		in, err := link.AttachTCX(link.TCXOptions{
			Interface: ifindex, Program: from, Attach: ebpf.AttachTCXIngress, Anchor: link.Head(),
		})
		if err != nil {
			return nil, fmt.Errorf("attach tcx ingress: %w", err)
		}
		links = append(links, in)
	}
	out, err := link.AttachTCX(link.TCXOptions{
		Interface: ifindex, Program: to, Attach: ebpf.AttachTCXEgress, Anchor: link.Head(),
	})
	if err != nil {
		for _, l := range links {
			if cerr := l.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("detach tcx ingress: %w", cerr))
			}
		}
		return nil, fmt.Errorf("attach tcx egress: %w", err)
	}
	return append(links, out), nil
}

func attachTC(nl *netlink.Handle, a *attachment, from, to *ebpf.Program) error {
	egressName := "flowlens_to_pod"
	if from == nil {
		egressName = "flowlens_exit"
	}
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: a.ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	switch err := nl.QdiscAdd(q); {
	case err == nil:
		a.qdisc = q
	case errors.Is(err, unix.EEXIST):
		// Someone else's clsact: use it, never delete it.
	default:
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	for _, f := range []struct {
		parent uint32
		prog   *ebpf.Program
		name   string
	}{
		{netlink.HANDLE_MIN_INGRESS, from, "flowlens_from_pod"},
		{netlink.HANDLE_MIN_EGRESS, to, egressName},
	} {
		if f.prog == nil {
			continue
		}
		filter := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: a.ifindex,
				Parent:    f.parent,
				Handle:    netlink.MakeHandle(0, tcHandle),
				Protocol:  unix.ETH_P_ALL,
				Priority:  tcPriority,
			},
			Fd:           f.prog.FD(),
			Name:         f.name,
			DirectAction: true,
		}
		// Replace: a filter left in our slot by a crashed agent is ours.
		if err := nl.FilterReplace(filter); err != nil {
			detachTC(nl, a)
			return fmt.Errorf("add tc filter %s: %w", f.name, err)
		}
		a.filters = append(a.filters, filter)
	}
	return nil
}

// detachTC removes the filters and, if flowlens created it, the qdisc. An
// interface that is already gone took them with it.
func detachTC(nl *netlink.Handle, a *attachment) error {
	var errs []error
	for _, f := range a.filters {
		if err := nl.FilterDel(f); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete tc filter %s on %s: %w", f.Name, a.name, err))
		}
	}
	a.filters = nil
	if a.qdisc != nil {
		if err := nl.QdiscDel(a.qdisc); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete clsact qdisc on %s: %w", a.name, err))
		}
		a.qdisc = nil
	}
	return errors.Join(errs...)
}

func gone(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)
}

func (a *attachment) detach(nl *netlink.Handle) error {
	var errs []error
	for _, l := range a.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close tcx link on %s: %w", a.name, err))
		}
	}
	a.links = nil
	errs = append(errs, detachTC(nl, a))
	return errors.Join(errs...)
}
