package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlens/flowlens/agent/observer"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

type sseEvent struct{ name, data string }

// openStream starts a hub over the in-process agent, serves the page's
// handler and opens /api/stream with the given filter arguments.
func openStream(t *testing.T, ring *observer.Ring, args ...string) (<-chan sseEvent, *http.Response) {
	t.Helper()
	conn := startAgent(t, ring)
	hub := newHub([]source{{name: "node-a", client: flowlensv1.NewObserverClient(conn)}},
		hubConfig{Backlog: 100, StatusEvery: 100 * time.Millisecond}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hub.Run(ctx) }()
	srv := httptest.NewServer(handler(hub))
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close(); cancel(); <-done })
	q := url.Values{"f": args}
	resp, err := http.Get(srv.URL + "/api/stream?" + q.Encode())
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	events := make(chan sseEvent, 100)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				events <- ev
				ev = sseEvent{}
			}
		}
	}()
	return events, resp
}

// next returns the next event called name, failing after a timeout.
func next(t *testing.T, events <-chan sseEvent, name string, into any) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			require.True(t, ok, "stream ended before a %s event", name)
			if ev.name == name {
				require.NoError(t, json.Unmarshal([]byte(ev.data), into), ev.data)
				return
			}
		case <-deadline:
			t.Fatalf("no %s event within 5s", name)
		}
	}
}

func TestStreamSendsFilteredEdgesFlowsStatusAndLoss(t *testing.T) {
	fe, db, be := pod("demo", "frontend-1", "frontend"), pod("demo", "db-0", "db"), pod("demo", "backend-1", "backend")
	ring := observer.NewRing(100)
	ring.Write(flowResp(tcpFlow(1, fe, be, 8080, flowlensv1.Verdict_FORWARDED)))
	ring.Write(flowResp(tcpFlow(2, fe, db, 8080, flowlensv1.Verdict_DROPPED)))
	ring.Write(flowResp(tcpFlow(3, fe, db, 8080, flowlensv1.Verdict_DROPPED)))

	events, resp := openStream(t, ring, "--verdict", "DROPPED")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))

	var hello helloEvent
	next(t, events, "hello", &hello)
	assert.Equal(t, helloEvent{Mode: "live", Agents: []string{"node-a"}}, hello)

	// The backlog arrives aggregated: the forwarded flow is filtered out.
	var edges []edgeView
	next(t, events, "edges", &edges)
	require.Len(t, edges, 1)
	e := edges[0]
	assert.Equal(t, "demo/frontend>demo/db 8080/TCP DROPPED", e.Key)
	assert.Equal(t, uint64(2), e.Flows)
	assert.Equal(t, "NETFILTER_DROP", e.DropReason)
	require.NotNil(t, e.Why)
	assert.Equal(t, []string{"demo/default-deny-ingress"}, e.Why.Ingress.IsolatedBy)
	var rows flowsEvent
	next(t, events, "flows", &rows)
	require.Len(t, rows.Flows, 2)
	assert.Equal(t, "demo/db-0", rows.Flows[0].Dst.Pod)

	var status []agentStatus
	next(t, events, "status", &status)
	require.Len(t, status, 1)
	assert.Equal(t, "ok", status[0].State)
	assert.Equal(t, uint32(3), status[0].Interfaces)
	assert.Equal(t, []lostView{{Node: "node-a", Source: "KERNEL_RING_BUFFER", Lost: 7, Time: time.Unix(0, 0).UTC()}}, status[0].Lost)

	// Live: a new drop updates the edge; a lost-events record passes the
	// filter.
	ring.Write(flowResp(tcpFlow(4, fe, db, 8080, flowlensv1.Verdict_DROPPED)))
	ring.Write(&flowlensv1.GetFlowsResponse{ResponseTypes: &flowlensv1.GetFlowsResponse_LostEvents{LostEvents: &flowlensv1.LostEvents{
		Source: flowlensv1.LostEventSource_AGENT_QUEUE, NumEventsLost: 5}}, NodeName: "node-a", Time: timestamppb.New(base)})
	next(t, events, "edges", &edges)
	require.Len(t, edges, 1)
	assert.Equal(t, uint64(3), edges[0].Flows)
	var lost []lostView
	next(t, events, "lost", &lost)
	assert.Equal(t, []lostView{{Node: "node-a", Source: "AGENT_QUEUE", Lost: 5, Time: base}}, lost)
}

func TestStreamRejectsBadFilter(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--verdict", "MAYBE"}, "unknown verdict"},
		{[]string{"--port", "http"}, "invalid port"},
		{[]string{"--server", "x:1"}, "unknown flag: --server"},
		{[]string{"demo"}, `unexpected argument "demo"`},
		{[]string{"--not"}, "--not must be followed by a filter flag"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, resp := openStream(t, observer.NewRing(10), tc.args...)
			body, _ := io.ReadAll(resp.Body)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			assert.Contains(t, string(body), tc.want)
		})
	}
}

func TestPageAndAssetsServed(t *testing.T) {
	srv := httptest.NewServer(handler(http.NotFoundHandler()))
	defer srv.Close()
	for path, want := range map[string]string{
		"/":                               `<script src="/assets/app.js">`,
		"/assets/app.js":                  "new EventSource",
		"/assets/app.css":                 "--drop",
		"/assets/vendor/cytoscape.min.js": "cytoscape",
	} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Contains(t, string(body), want, path)
	}
}
