package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	vnetns "github.com/vishvananda/netns"
)

// netnsDir is where `ip netns` keeps its bind mounts.
const netnsDir = "/run/netns"

// inNetNS runs fn on an OS thread switched into the named namespace. Sockets fn creates keep
// that namespace after the thread switches back. If switching back fails the thread stays locked
// so the Go runtime retires it instead of reusing a thread in the wrong namespace.
func Do(name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	target, err := vnetns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer target.Close()
	if err := vnetns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", name, err)
	}
	fnErr := fn()
	if err := vnetns.Set(orig); err != nil {
		return errors.Join(fnErr, fmt.Errorf("return from netns %s: %w", name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// run executes argv (optionally inside netns ns, via `ip netns exec`) with stdin, and returns
// stdout; the error carries stderr.
func Run(ctx context.Context, ns string, stdin string, argv ...string) ([]byte, error) {
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func Add(ctx context.Context, name string) error {
	if _, err := Run(ctx, "", "", "ip", "netns", "add", name); err != nil {
		return fmt.Errorf("create netns: %w", err)
	}
	return nil
}

// delNetNS removes a named namespace; a namespace already gone is not an error.
func Del(ctx context.Context, name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := Run(ctx, "", "", "ip", "netns", "del", name); err != nil {
		return fmt.Errorf("delete netns: %w", err)
	}
	return nil
}

// ListNetNS returns the names of the namespaces under /run/netns.
func List() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", netnsDir, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// Sweep deletes every namespace whose name starts with prefix+"-": what a lab with that prefix
// may have left after a crash. Since every lab link lives in a lab namespace, this removes the
// links too.
func Sweep(ctx context.Context, prefix string) ([]string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	names, err := List()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, n := range names {
		if !strings.HasPrefix(n, prefix+"-") {
			continue
		}
		if err := Del(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("sweep %s: %w", n, err))
			continue
		}
		removed = append(removed, n)
	}
	return removed, errors.Join(errs...)
}

// writeSysctl sets a sysctl inside a namespace; /proc/sys/net is per network namespace, resolved
// at open time by the opening thread.
func WriteSysctl(ns, key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return Do(ns, func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("set %s=%s in %s: %w", key, value, ns, err)
		}
		return nil
	})
}

func ReadSysctl(ns, key string) (string, error) {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	var v string
	err := Do(ns, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read %s in %s: %w", key, ns, err)
		}
		v = strings.TrimSpace(string(b))
		return nil
	})
	return v, err
}
