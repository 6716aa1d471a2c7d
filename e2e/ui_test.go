package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab/traffic"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/flowlens/flowlens/ui"
)

// runScenario repeats the lab scenario's cases until the test ends.
func runScenario(t *testing.T, l *testLab) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for _, c := range l.Scenario().Cases {
				if ctx.Err() != nil {
					return
				}
				traffic.RunCase(ctx, l.Lab, l.servers, c)
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// TestUIShowsLabTraffic is issue 12's browser test: `flowlens ui` against
// an agent in the lab with the scenario's traffic, in headless chromium.
func TestUIShowsLabTraffic(t *testing.T) {
	b := startBrowser(t)
	l := startLab(t, 1)
	a := startAgent(t, l, "node1")
	runScenario(t, l)
	url := startUI(t, "--server", forwardFromNetNS(t, a.node.NetNS, "127.0.0.1:4280"))

	require.NoError(t, chromedp.Do(b.ctx, chromedp.Navigate(url)))
	// The scenario's drop, frontend -> db:8080 (default-deny-ingress), is a
	// red edge. The lab's pods name their ReplicaSet, not a Deployment, so
	// workload nodes are matched by prefix.
	dropEdge := `flowlens.cy.edges('.DROPPED').filter(e => e.source().id().startsWith('demo/frontend') && e.target().id() === 'demo/db' && e.data('label').includes('8080/TCP'))`
	waitTrue(t, b, "the red frontend -> db edge", dropEdge+`.length === 1`, 30*time.Second)
	assert.Equal(t, "rgb(224,49,49)", strings.ReplaceAll(eval[string](t, b, dropEdge+`[0].style('line-color')`), " ", ""))
	waitTrue(t, b, "a green frontend -> backend edge",
		`flowlens.cy.edges('.FORWARDED').some(e => e.source().id().startsWith('demo/frontend') && e.target().id().startsWith('demo/backend'))`, 15*time.Second)
	// Every workload of the lab is on the map, in its namespace's group.
	for _, w := range []string{"demo/frontend", "demo/backend", "demo/db", "other/outsider"} {
		ns, _, _ := strings.Cut(w, "/")
		assert.Equal(t, "g:"+ns, eval[string](t, b, `(flowlens.cy.nodes().filter(n => n.id().startsWith('`+w+`'))[0] || {data: () => ''}).data('parent')`), "node %s", w)
	}
	waitTrue(t, b, "the agent's status", `document.querySelector('#agents').textContent.includes('node1')`, 10*time.Second)
	assert.Equal(t, "lost events: none", eval[string](t, b, `document.querySelector('#lost').textContent`))
	screenshot(t, b, "#map-pane", "ui-map.png")
	screenshot(t, b, "body", "ui-page.png")

	// A filter narrows the table: --port 8080 leaves only 8080 rows.
	rowPorts := `[...document.querySelectorAll('#flows tbody tr td:nth-child(4)')].map(td => td.textContent)`
	waitTrue(t, b, "rows of another port", rowPorts+`.some(p => !p.startsWith('8080/TCP'))`, 15*time.Second)
	_ = eval[bool](t, b, `(i => { i.focus(); return true })(document.querySelector('input[name=port]'))`)
	require.NoError(t, chromedp.Do(b.ctx, chromedp.KeyEvent("8080")))
	waitTrue(t, b, "only 8080 rows", `(r => r.length > 0 && r.every(p => p.startsWith('8080/TCP')))(`+rowPorts+`)`, 15*time.Second)
	_ = eval[bool](t, b, `(i => { i.value = ''; return i.dispatchEvent(new Event('input', {bubbles: true})) })(document.querySelector('input[name=port]'))`)
	waitTrue(t, b, "other ports back", rowPorts+`.some(p => !p.startsWith('8080/TCP'))`, 15*time.Second)

	// Clicking the red edge narrows the table to it and explains it.
	waitTrue(t, b, "the red edge after the filter change", dropEdge+`.length === 1`, 15*time.Second)
	key := clickEdge(t, b, dropEdge+`[0]`)
	waitTrue(t, b, "the explanation", `document.querySelector('#why').textContent.includes('default-deny-ingress')`, 5*time.Second)
	why := eval[string](t, b, `document.querySelector('#why').textContent`)
	assert.Contains(t, why, "NETFILTER_DROP", "the drop reason")
	assert.Contains(t, why, "DROPPED")
	waitRowsOfEdge(t, b, key, 0)
	screenshot(t, b, "body", "ui-edge-selected.png")

	// Clicking a row explains that one flow.
	type point struct{ X, Y float64 }
	row := eval[point](t, b, `(r => ({X: r.left + r.width / 2, Y: r.top + r.height / 2}))(document.querySelector('#flows tbody tr').getBoundingClientRect())`)
	require.NoError(t, chromedp.Do(b.ctx, chromedp.MouseClickXY(row.X, row.Y)))
	waitTrue(t, b, "the flow's explanation", `/^demo\/frontend:\* → demo\/db:8080 TCP$/.test(document.querySelector('#why h2').textContent)`, 5*time.Second)
	why = eval[string](t, b, `document.querySelector('#why').textContent`)
	assert.Contains(t, why, "default-deny-ingress")
	assert.Contains(t, why, "NETFILTER_DROP")
	assert.Empty(t, b.consoleErrors(), "console errors")
}

// TestPolicyMatrixHTML checks `policy matrix -o html` the same way: one
// file that renders offline, with the homelab's allowed and denied pairs and
// their explanations.
func TestPolicyMatrixHTML(t *testing.T) {
	b := startBrowser(t)
	out := filepath.Join(t.ArtifactDir(), "matrix.html")
	cmd := exec.Command(bins.cli, "policy", "matrix", "--cluster", "../examples/homelab/cluster.yaml",
		"--policies", "../examples/homelab/network-policies", "--port", "5432/TCP", "-o", "html")
	html, err := cmd.Output()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(out, html, 0o644))
	for _, ref := range []string{`src="`, `href="/`, "http://", "https://"} {
		assert.NotContains(t, string(html), "<script "+ref, "no external script")
	}

	require.NoError(t, chromedp.Do(b.ctx, chromedp.Navigate("file://"+out)))
	waitTrue(t, b, "the map", `flowlens.cy.edges().length > 0`, 10*time.Second)
	allowed := `flowlens.cy.edges('.FORWARDED').filter(e => e.target().id().startsWith('database/') && e.visible())`
	require.Positive(t, eval[int](t, b, allowed+`.length`), "an allowed edge into database")
	assert.Positive(t, eval[int](t, b, `flowlens.cy.edges('.DROPPED').length`), "denied edges")
	screenshot(t, b, "#map-pane", "matrix-map.png")

	// Allowed edges cross; whichever one the mouse hit is the one the table
	// and the explanation must follow.
	clickEdge(t, b, allowed+`[0]`)
	waitTrue(t, b, "an edge selected", `flowlens.state.edgeFilter !== null`, 5*time.Second)
	key := eval[string](t, b, `flowlens.state.edgeFilter`)
	assert.True(t, strings.HasSuffix(key, " 5432/TCP FORWARDED"), key)
	waitTrue(t, b, "the explanation", `document.querySelector('#why').textContent.includes('allowed by')`, 5*time.Second)
	waitRowsOfEdge(t, b, key, 1)
	assert.Empty(t, b.consoleErrors(), "console errors")
}

// TestUIManyWorkloads loads a page of 300 workloads in 20 namespaces with
// 1,500 edges (the size issue 12 asks to stay usable at) and reports how
// long it takes to draw and to answer a click.
func TestUIManyWorkloads(t *testing.T) {
	b := startBrowser(t)
	var flows []*flowlensv1.Flow
	ep := func(i int) *flowlensv1.Endpoint {
		return &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: fmt.Sprintf("ns%02d", i%20),
			PodName: fmt.Sprintf("app%03d-0", i), Workloads: []*flowlensv1.Workload{{Kind: "Deployment", Name: fmt.Sprintf("app%03d", i)}}}
	}
	for i := range 300 {
		for j := range 5 {
			v := flowlensv1.Verdict_FORWARDED
			if j == 4 {
				v = flowlensv1.Verdict_DROPPED
			}
			fl := &flowlensv1.Flow{Verdict: v, Source: ep(i), Destination: ep((i*7 + j*31 + 1) % 300),
				L4: &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{DestinationPort: uint32(8000 + j)}}}}
			if i == 7 && j == 4 {
				fl.Policy = &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_ALLOW, Mismatch: flowlensv1.Mismatch_UNEXPECTED_DROP}
			}
			flows = append(flows, fl)
		}
	}
	out := filepath.Join(t.ArtifactDir(), "many.html")
	f, err := os.Create(out)
	require.NoError(t, err)
	require.NoError(t, ui.WriteMatrix(f, "300 workloads", "synthetic", flows))
	require.NoError(t, f.Close())

	start := time.Now()
	require.NoError(t, chromedp.Do(b.ctx, chromedp.Navigate("file://"+out)))
	waitTrue(t, b, "the map", `flowlens.cy.nodes().length === 320 && flowlens.cy.edges().length === 1500`, 30*time.Second)
	drawn := time.Since(start)
	_ = eval[bool](t, b, `(s => { s.value = ''; return s.dispatchEvent(new Event('input', {bubbles: true})) })(document.querySelector('select[name=verdict]'))`)
	waitTrue(t, b, "every edge shown", `flowlens.cy.edges(':visible').length === 1500`, 10*time.Second)
	// The one disagreement is marked apart from plain drops.
	mismatch := `flowlens.cy.edges('.mismatch')`
	require.Equal(t, 1, eval[int](t, b, mismatch+`.length`))
	assert.Equal(t, "dashed", eval[string](t, b, mismatch+`[0].style('line-style')`))
	assert.True(t, strings.HasPrefix(eval[string](t, b, mismatch+`[0].data('label')`), "⚠"))
	assert.Equal(t, "solid", eval[string](t, b, `flowlens.cy.edges('.DROPPED').not('.mismatch')[0].style('line-style')`))

	start = time.Now()
	clickEdge(t, b, `flowlens.cy.edges('.DROPPED')[0]`)
	waitTrue(t, b, "an edge selected", `flowlens.state.edgeFilter !== null && document.querySelectorAll('#flows tbody tr').length === 1`, 10*time.Second)
	clicked := time.Since(start)
	t.Logf("page script done %d ms after navigation start", eval[int](t, b, `flowlens.state.drawnMs`))
	t.Logf("300 workloads, 1500 edges: drawn in %v, click to filtered table and explanation in %v", drawn.Round(time.Millisecond), clicked.Round(time.Millisecond))
	screenshot(t, b, "body", "many.png")
	assert.Empty(t, b.consoleErrors(), "console errors")
}
