package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/flowlens/flowlens/internal/testenv"
	"github.com/stretchr/testify/require"
)

// browser is a headless Debian chromium driven over the DevTools protocol,
// collecting every console error and uncaught exception of its pages.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	requireRoot(t)
	path := testenv.Tool(t, "chromium", "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")), "start chromium")
	b := &browser{ctx: ctx}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				b.mu.Lock()
				b.errors = append(b.errors, string(m.Type)+": "+m.Text+" at "+m.URL)
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// eval runs a JavaScript expression and returns its value.
func eval[T any](t *testing.T, b *browser, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	require.NoError(t, err, "evaluate %s", js)
	return v
}

// poll evaluates a JavaScript condition until it holds or timeout passes.
func poll(b *browser, js string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(200*time.Millisecond)))
	return err
}

// waitTrue polls a JavaScript condition until it holds.
func waitTrue(t *testing.T, b *browser, what, js string, timeout time.Duration) {
	t.Helper()
	err := poll(b, js, timeout)
	if err != nil {
		t.Logf("page state: %s", eval[string](t, b, `window.flowlens ? JSON.stringify({edges: flowlens.cy.edges().map(e => e.id()),
			nodes: flowlens.cy.nodes().map(n => n.id())}).slice(0, 3000) : document.body.innerText.slice(0, 2000)`))
		t.Logf("console errors: %q", b.consoleErrors())
	}
	require.NoError(t, err, "waiting for %s (%s)", what, js)
}

// waitRowsOfEdge waits until every row of the flow table belongs to the
// edge key, and there are want rows (any number above zero when want is 0).
// The table is redrawn on the next animation frame, not with the click's
// explanation: reading it at once races that frame, which a loaded machine
// delays past the explanation's appearance.
func waitRowsOfEdge(t *testing.T, b *browser, key string, want int) {
	t.Helper()
	rows := `[...document.querySelectorAll('#flows tbody tr')].map(tr => tr.dataset.edge)`
	cond := fmt.Sprintf(`(r => r.length > 0 && (%d === 0 || r.length === %d) && r.every(e => e === %q))(%s)`, want, want, key, rows)
	if err := poll(b, cond, 10*time.Second); err != nil {
		got := eval[[]string](t, b, rows)
		require.NoError(t, err, "waiting for the table to show only edge %q (want %d rows); it shows %d rows: %q", key, want, len(got), got[:min(len(got), 10)])
	}
}

// clickEdge clicks, with the mouse, the middle of the map edge the
// expression picks, and returns the edge's key.
func clickEdge(t *testing.T, b *browser, pick string) string {
	t.Helper()
	type point struct {
		X, Y float64
		Key  string
	}
	p := eval[point](t, b, `(() => {
		const e = `+pick+`;
		const m = e.renderedMidpoint(), r = flowlens.cy.container().getBoundingClientRect();
		return {X: r.left + m.x, Y: r.top + m.y, Key: e.id()};
	})()`)
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx, chromedp.MouseClickXY(p.X, p.Y)))
	return p.Key
}

// screenshot writes a PNG of the element sel to the test's artifact
// directory (kept with go test -artifacts).
func screenshot(t *testing.T, b *browser, sel, name string) {
	t.Helper()
	clip := eval[page.Viewport](t, b, `(r => ({x: r.left, y: r.top, width: r.width, height: r.height, scale: 1}))(document.querySelector('`+sel+`').getBoundingClientRect())`)
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		r, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormatPng, Clip: &clip})
		if err != nil {
			return nil, err
		}
		return r.Data, nil
	})
	require.NoError(t, err)
	path := filepath.Join(t.ArtifactDir(), name)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s", path)
}

// forwardFromNetNS accepts on loopback here and connects each connection
// to addr inside the network namespace ns: the agent listens on the lab
// node's loopback, the UI and the browser run here.
func forwardFromNetNS(t *testing.T, ns, addr string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			up, err := dialInNetNS(ctx, ns, addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, up)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(up, c); up.Close() })
			wg.Go(func() { _, _ = io.Copy(c, up); c.Close() })
		}
	})
	t.Cleanup(func() {
		cancel()
		lis.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return lis.Addr().String()
}

// startUI runs `flowlens ui` and returns the page's URL.
func startUI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(bins.cli, append([]string{"ui", "--listen", "127.0.0.1:0"}, args...)...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("flowlens ui did not stop on SIGINT")
		}
		if t.Failed() {
			t.Logf("flowlens ui stderr:\n%s", stderr.String())
		}
	})
	line := make(chan string, 1)
	go func() {
		buf := make([]byte, 256)
		n, _ := out.Read(buf)
		line <- string(buf[:n])
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		url, ok := strings.CutPrefix(strings.TrimSpace(l), "flowlens ui: ")
		require.True(t, ok, "first line %q; stderr: %s", l, stderr.String())
		return url
	case <-time.After(15 * time.Second):
		t.Fatalf("flowlens ui printed no address; stderr: %s", stderr.String())
		return ""
	}
}
