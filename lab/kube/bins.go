package kube

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Binaries built from the test-only module lab/kubernetes.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"}

// kubeVersion is what the components report (the module has no git tree to take it from).
const kubeVersion = "v1.34.4"

// Environment overrides.
const (
	EnvBinDir   = "FLOWLENS_KUBE_BIN_DIR" // a directory that already holds the binaries
	EnvCacheDir = "FLOWLENS_KUBE_CACHE"   // where built binaries are kept
	EnvRepo     = "FLOWLENS_REPO"         // the flowlens source tree
)

// EnsureBinaries returns a directory holding the Kubernetes binaries, building them on first use.
// They are kept in a cache directory keyed by lab/kubernetes/go.sum, so a cold build (about 30
// CPU-minutes) happens once per dependency change, and concurrent callers wait for one
// build behind a file lock.
func EnsureBinaries(ctx context.Context, log *slog.Logger) (string, error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		return d, haveAll(d)
	}
	repo, err := RepoRoot()
	if err != nil {
		return "", err
	}
	mod := filepath.Join(repo, "lab", "kubernetes")
	sum, err := os.ReadFile(filepath.Join(mod, "go.sum"))
	if err != nil {
		return "", fmt.Errorf("kubernetes module: %w", err)
	}
	h := sha256.Sum256(sum)
	cache := cacheDir()
	dir := filepath.Join(cache, hex.EncodeToString(h[:8]))
	if haveAll(dir) == nil {
		return dir, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("kubernetes binary cache: %w", err)
	}
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return "", fmt.Errorf("kubernetes binary cache: %w", err)
	}
	defer unlock()
	if haveAll(dir) == nil { // another process built it while this one waited
		return dir, nil
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("kubernetes binary cache: %w", err)
	}
	log.Info("building Kubernetes binaries (cold: ~34 CPU-minutes)", "module", mod, "into", dir)
	start := time.Now()
	if err := buildModule(ctx, mod, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("kubernetes binary cache: %w", err)
	}
	log.Info("built Kubernetes binaries", "took", time.Since(start).Round(time.Second))
	return dir, haveAll(dir)
}

func buildModule(ctx context.Context, mod, out string) error {
	v := "k8s.io/component-base/version"
	ld := strings.Join([]string{"-s", "-w",
		"-X", v + ".gitVersion=" + kubeVersion, "-X", v + ".gitMajor=1", "-X", v + ".gitMinor=34",
		"-X", v + ".gitTreeState=clean", "-X", v + ".buildDate=2026-01-01T00:00:00Z"}, " ")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ld, "-o", out+"/", "./cmd/...")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build Kubernetes binaries in %s: %w: %s", mod, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func cacheDir() string {
	if d := os.Getenv(EnvCacheDir); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "flowlens-lab", "kubernetes")
	}
	return "/var/cache/flowlens-lab/kubernetes"
}

func haveAll(dir string) error {
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("kubernetes binaries: %w", err)
		}
	}
	return nil
}

// RepoRoot finds the flowlens source tree: $FLOWLENS_REPO, this file's tree (tests), or the
// working directory and its parents.
func RepoRoot() (string, error) {
	if d := os.Getenv(EnvRepo); d != "" {
		return d, nil
	}
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, d := range starts {
		for ; ; d = filepath.Dir(d) {
			b, err := os.ReadFile(filepath.Join(d, "go.mod"))
			if err == nil && bytes.HasPrefix(b, []byte("module github.com/flowlens/flowlens\n")) {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", errors.New("locate the flowlens source tree: run from inside it or set " + EnvRepo)
}
