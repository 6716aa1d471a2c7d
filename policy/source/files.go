package source

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowlens/flowlens/policy"
)

// Files reloads the policy files under Path whenever their names, sizes or
// modification times change. Polling (rather than inotify) also sees the
// symlink swap a ConfigMap volume does on update.
type Files struct {
	Path  string
	Every time.Duration
	Log   *slog.Logger
}

// Load reads the set once, for start-up: a set that does not load is an
// error for the caller to stop on (there is no last good set to keep yet).
// The stamp it returns is for WatchFrom.
func (f Files) Load() ([]networkingv1.NetworkPolicy, Stamp, error) {
	sum, err := treeStamp(f.Path)
	if err != nil {
		return nil, Stamp{}, err
	}
	pols, err := policy.LoadFiles(f.Path)
	if err != nil {
		return nil, Stamp{}, err
	}
	return pols, sum, nil
}

// Stamp summarises a policy tree (names, sizes, modification times).
type Stamp [32]byte

// Watch calls onLoad with the first set and with every changed set that
// loads and validates, and onErr when reading or loading fails; a failure
// keeps the last good set (onLoad is not called) and is retried on the next
// tick. It returns when ctx ends.
func (f Files) Watch(ctx context.Context, onLoad func([]networkingv1.NetworkPolicy), onErr func(error)) error {
	return f.WatchFrom(ctx, Stamp{}, onLoad, onErr)
}

// WatchFrom is Watch after a Load that returned last: the set it loaded is
// not delivered again.
func (f Files) WatchFrom(ctx context.Context, last Stamp, onLoad func([]networkingv1.NetworkPolicy), onErr func(error)) error {
	tick := time.NewTicker(f.Every)
	defer tick.Stop()
	for {
		sum, err := treeStamp(f.Path)
		switch {
		case err != nil:
			f.Log.Error("reading policy files", "path", f.Path, "err", err)
			onErr(err)
		case sum != last:
			pols, err := policy.LoadFiles(f.Path)
			if err != nil {
				f.Log.Error("loading policy files; keeping the last good set", "path", f.Path, "err", err)
				onErr(err)
				break
			}
			last = sum
			f.Log.Info("intended policy set loaded", "path", f.Path, "policies", len(pols))
			onLoad(pols)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// treeStamp summarises the names, sizes and mtimes of the files under root.
func treeStamp(root string) (Stamp, error) {
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", p, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	var out Stamp
	if err != nil {
		return out, fmt.Errorf("walk %s: %w", root, err)
	}
	copy(out[:], h.Sum(nil))
	return out, nil
}
