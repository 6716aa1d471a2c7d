package source

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
)

const policyYAML = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: ns, name: %s}
spec: {podSelector: {}}
`

// Watch delivers the first set, a changed set, and reports a broken file
// without delivering it (the last good set stays with the caller).
func TestFilesWatchReloadsAndKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}
	write("a.yaml", fmtPolicy("a"))
	loads := make(chan []networkingv1.NetworkPolicy, 10)
	errs := make(chan error, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	f := Files{Path: dir, Every: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go func() {
		done <- f.Watch(ctx, func(p []networkingv1.NetworkPolicy) { loads <- p }, func(err error) { errs <- err })
	}()
	t.Cleanup(func() { cancel(); assert.NoError(t, <-done) })

	next := func() []networkingv1.NetworkPolicy {
		select {
		case p := <-loads:
			return p
		case <-time.After(5 * time.Second):
			t.Fatal("no set delivered")
			return nil
		}
	}
	assert.Len(t, next(), 1)
	write("b.yaml", fmtPolicy("b"))
	assert.Len(t, next(), 2)
	write("c.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: c}\nspec: {bogus: 1}\n")
	select {
	case err := <-errs:
		assert.ErrorContains(t, err, "c.yaml")
	case p := <-loads:
		t.Fatalf("a broken file delivered a set of %d", len(p))
	case <-time.After(5 * time.Second):
		t.Fatal("no error for a broken file")
	}
}

func fmtPolicy(name string) string {
	return fmt.Sprintf(policyYAML, name)
}
