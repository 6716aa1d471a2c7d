package kube

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Close takes the cluster down and leaves nothing behind: it stops the node daemons, kills the
// containers through containerd (their shims outlive containerd otherwise), stops the control
// plane, unmounts what containerd and the kubelet mounted under Dir, removes the pod network
// namespaces containerd made, the lab's namespaces, libcni's cache entries and Dir itself. Only
// processes the cluster started are signalled, by PID. It is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := c.State()
	var errs []error
	stop := func(match func(*Proc) bool, grace time.Duration) {
		for i := len(st.Procs) - 1; i >= 0; i-- {
			if p := st.Procs[i]; match(p) {
				errs = append(errs, p.stop(grace))
			}
		}
	}
	has := func(s string) func(*Proc) bool { return func(p *Proc) bool { return strings.HasPrefix(p.Name, s) } }
	stop(has("kube-proxy-"), 5*time.Second)
	stop(has("kubelet-"), 5*time.Second)
	var podNetNS []string
	for _, n := range st.Nodes {
		ns, err := c.killContainers(ctx, n)
		podNetNS = append(podNetNS, ns...)
		errs = append(errs, err)
	}
	stop(has("containerd-"), 10*time.Second)
	stop(func(p *Proc) bool { return true }, 10*time.Second)
	errs = append(errs, unmountUnder(st.Dir))
	for _, ns := range podNetNS {
		errs = append(errs, removeNetNSFile(ns))
	}
	for i := len(st.NetNS) - 1; i >= 0; i-- {
		errs = append(errs, delNetNS(ctx, st.NetNS[i]))
	}
	for _, n := range st.Nodes {
		errs = append(errs, removeGlob(filepath.Join("/var/lib/cni/results", cniNetwork(st.Prefix, n)+"-*")))
	}
	errs = append(errs, removeLinksInto("/var/log/containers", st.Dir))
	// containerd 1.6 keeps shim sockets in /run/containerd/s whatever its state directory; the
	// shims remove theirs, and the directories go if nothing else uses them.
	for _, d := range []string{"/run/containerd/s", "/run/containerd"} {
		_ = os.Remove(d)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("take down cluster %s: %w", st.Prefix, err)
	}
	if err := os.RemoveAll(st.Dir); err != nil {
		return fmt.Errorf("take down cluster %s: %w", st.Prefix, err)
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.log.Info("cluster down", "prefix", st.Prefix)
	return nil
}

// killContainers kills and deletes every task of the node's containerd and returns the pod
// network namespaces (cni-*) its containers used, for removal once containerd is gone.
func (c *Cluster) killContainers(ctx context.Context, n NodeState) ([]string, error) {
	if _, err := os.Stat(n.containerdSock()); err != nil {
		return nil, nil // containerd never came up
	}
	ids, netns, err := c.containers(ctx, n)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, id := range ids {
		_, _ = c.ctr(ctx, n, "tasks", "kill", "--signal", "SIGKILL", id) // may have no task
	}
	for _, id := range ids {
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := c.ctr(ctx, n, "tasks", "delete", "--force", id)
			if err == nil || strings.Contains(err.Error(), "not found") || time.Now().After(deadline) {
				if err != nil && !strings.Contains(err.Error(), "not found") {
					errs = append(errs, err)
				}
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return netns, errors.Join(errs...)
}

// containers lists the node's containerd containers and the pod network namespaces (cni-*)
// they use.
func (c *Cluster) containers(ctx context.Context, n NodeState) (ids, netns []string, err error) {
	out, err := c.ctr(ctx, n, "containers", "list", "--quiet")
	if err != nil {
		return nil, nil, err
	}
	ids = strings.Fields(out)
	for _, id := range ids {
		info, err := c.ctr(ctx, n, "containers", "info", id)
		if err != nil {
			continue
		}
		if p := sandboxNetNS(info); p != "" && !slices.Contains(netns, p) {
			netns = append(netns, p)
		}
	}
	return ids, netns, nil
}

// PodNetNS lists the pod network namespaces (/run/netns/cni-*) of every node's containers: the
// ones Close removes. Other clusters on the machine have their own.
func (c *Cluster) PodNetNS(ctx context.Context) ([]string, error) {
	var all []string
	for _, n := range c.Nodes() {
		if _, err := os.Stat(n.containerdSock()); err != nil {
			continue
		}
		_, netns, err := c.containers(ctx, n)
		if err != nil {
			return nil, err
		}
		all = append(all, netns...)
	}
	return all, nil
}

// sandboxNetNS reads the network namespace path from `ctr containers info` output.
func sandboxNetNS(info string) string {
	var ci struct {
		Spec struct {
			Linux struct {
				Namespaces []struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"namespaces"`
			} `json:"linux"`
		} `json:"Spec"`
	}
	if json.Unmarshal([]byte(info), &ci) != nil {
		return ""
	}
	for _, ns := range ci.Spec.Linux.Namespaces {
		if ns.Type == "network" && strings.HasPrefix(filepath.Base(ns.Path), "cni-") {
			return ns.Path
		}
	}
	return ""
}

func removeNetNSFile(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// unmountUnder detaches every mount point below dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

func removeGlob(pattern string) error {
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return fmt.Errorf("glob %s: %w", pattern, err)
	}
	var errs []error
	for _, m := range matches {
		if err := os.RemoveAll(m); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeLinksInto removes the symlinks in dir that point below target (the kubelet links
// container logs into /var/log/containers whatever its pod log directory).
func removeLinksInto(dir, target string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if dest, err := os.Readlink(p); err == nil && strings.HasPrefix(dest, target+"/") {
			if err := os.Remove(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
