package kube

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Images the lab builds. There is no registry here: images are built FROM scratch with podman,
// saved as OCI archives and imported into each node's containerd.
const (
	// LabPodImage runs the scenario's pods (labpod serve) and, without arguments, is the pod
	// sandbox's pause process.
	LabPodImage = "localhost/flowlens-labpod:lab"
	PauseImage  = LabPodImage
	// AgentImage is the agent image the lab overlay sets; the tag is not "latest", so the
	// kubelet never tries to pull it.
	AgentImage = "ghcr.io/flowlens/flowlens:lab"
)

func sandboxArchive(dir string) string { return filepath.Join(dir, "images", "labpod.tar") }

// BuildImage builds containerfile with podman in contextDir, tags it name, writes it to archive
// as an OCI archive, and removes it from podman's store again.
func BuildImage(ctx context.Context, containerfile, contextDir, name, archive string) error {
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	_ = os.Remove(archive) // podman save refuses to overwrite
	// podman's store is the machine's and the lab's image names are fixed: concurrent labs (test
	// packages run in parallel) would save or remove each other's tag between these steps.
	unlock, err := lockFile(filepath.Join(os.TempDir(), "flowlens-lab-podman.lock"))
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	defer unlock()
	steps := [][]string{
		{"podman", "build", "--quiet", "--no-cache", "-f", containerfile, "-t", name, contextDir},
		{"podman", "save", "--format", "oci-archive", "-o", archive, name},
		{"podman", "rmi", name},
	}
	for _, argv := range steps {
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("image %s: %s: %w: %s", name, strings.Join(argv[:2], " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// goBuildStatic builds Go packages of the flowlens module as static binaries into out.
func goBuildStatic(ctx context.Context, out string, pkgs ...string) error {
	repo, err := RepoRoot()
	if err != nil {
		return err
	}
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", out + "/"}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", strings.Join(pkgs, " "), err, strings.TrimSpace(string(b)))
	}
	return nil
}

// BuildLabPodImage builds labpod into a FROM scratch image and writes its OCI archive.
func BuildLabPodImage(ctx context.Context, archive string) error {
	work, err := os.MkdirTemp("", "flowlens-labpod")
	if err != nil {
		return fmt.Errorf("labpod image: %w", err)
	}
	defer os.RemoveAll(work)
	if err := goBuildStatic(ctx, work, "./lab/kube/labpod"); err != nil {
		return err
	}
	cf := filepath.Join(work, "Containerfile")
	if err := os.WriteFile(cf, []byte("FROM scratch\nCOPY labpod /labpod\nENTRYPOINT [\"/labpod\"]\n"), 0o644); err != nil {
		return fmt.Errorf("labpod image: %w", err)
	}
	return BuildImage(ctx, cf, work, LabPodImage, archive)
}

// BuildAgentImage is `make image` for the lab: the static agent and CLI in the FROM scratch build
// file deploy/image/Containerfile.scratch, tagged AgentImage.
func BuildAgentImage(ctx context.Context, archive string) error {
	repo, err := RepoRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "flowlens-agent-image")
	if err != nil {
		return fmt.Errorf("agent image: %w", err)
	}
	defer os.RemoveAll(work)
	if err := goBuildStatic(ctx, work, "./cmd/flowlens-agent", "./cmd/flowlens"); err != nil {
		return err
	}
	return BuildImage(ctx, filepath.Join(repo, "deploy", "image", "Containerfile.scratch"), work, AgentImage, archive)
}

// ImportImage loads an OCI archive into a node's containerd, in the namespace the CRI uses.
func (c *Cluster) ImportImage(ctx context.Context, n NodeState, archive string) error {
	if _, err := c.ctr(ctx, n, "images", "import", archive); err != nil {
		return fmt.Errorf("import %s on %s: %w", filepath.Base(archive), n.Name, err)
	}
	return nil
}

// ctr runs containerd's ctr against a node's containerd, in the CRI's k8s.io namespace.
func (c *Cluster) ctr(ctx context.Context, n NodeState, args ...string) (string, error) {
	argv := append([]string{"--address", n.containerdSock(), "--namespace", "k8s.io"}, args...)
	out, err := exec.CommandContext(ctx, "ctr", argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
