package ui

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/pflag"

	"github.com/flowlens/flowlens/filter"
	"github.com/flowlens/flowlens/observe"
)

// Stream tuning: how often a stream sends what changed, and how many table
// rows one send carries at most (the map counts every flow; the table, a
// human reads).
const (
	flushEvery   = 500 * time.Millisecond
	rowsPerFlush = 200
	subBuffer    = 4096
	heartbeat    = 15 * time.Second
)

// parseFilter reads the stream's filter: the repeated query parameter "f"
// holds `flowlens observe` filter arguments in order ("--namespace",
// "demo", "--not", "--port", "53"), parsed by observe's own flags so the
// page and the CLI filter alike.
func parseFilter(q url.Values) (*filter.Filter, error) {
	fs := pflag.NewFlagSet("filter", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flt := observe.AddFilterFlags(fs)
	if err := fs.Parse(q["f"]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: filters are flags", fs.Arg(0))
	}
	allow, deny, err := flt.Lists()
	if err != nil {
		return nil, err
	}
	return filter.Compile(allow, deny)
}

// sse writes Server-Sent Events: "event: NAME\ndata: JSON\n\n".
type sse struct {
	w http.ResponseWriter
	f http.Flusher
}

func (s sse) send(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", name, err)
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", name, b); err != nil {
		return err
	}
	s.f.Flush()
	return nil
}

// streamState is one open stream's view: its filter, its graph and the rows
// not sent yet.
type streamState struct {
	flt       *filter.Filter
	g         *graph
	rows      []flowView
	skipped   int
	lost      []lostView
	statusGen uint64
}

func (st *streamState) take(ev *event) {
	if ev.lost != nil {
		st.lost = append(st.lost, *ev.lost) // loss passes every filter
		return
	}
	if !st.flt.Match(ev.flow) {
		return
	}
	st.g.add(&ev.view)
	st.rows = append(st.rows, ev.view)
	if len(st.rows) > 2*rowsPerFlush {
		drop := len(st.rows) - rowsPerFlush
		st.skipped += drop
		st.rows = append(st.rows[:0], st.rows[drop:]...)
	}
}

// flowsEvent is a batch of table rows; Skipped flows matched but came too
// fast to list (they are counted on the map).
type flowsEvent struct {
	Flows   []flowView `json:"flows"`
	Skipped int        `json:"skipped,omitempty"`
}

func (st *streamState) flush(out sse, h *flowHub) error {
	if edges := st.g.flush(); len(edges) > 0 {
		if err := out.send("edges", edges); err != nil {
			return err
		}
	}
	if len(st.rows) > 0 {
		rows := st.rows
		if len(rows) > rowsPerFlush {
			st.skipped += len(rows) - rowsPerFlush
			rows = rows[len(rows)-rowsPerFlush:]
		}
		if err := out.send("flows", flowsEvent{Flows: rows, Skipped: st.skipped}); err != nil {
			return err
		}
		st.rows, st.skipped = st.rows[:0], 0
	}
	if len(st.lost) > 0 {
		if err := out.send("lost", st.lost); err != nil {
			return err
		}
		st.lost = st.lost[:0]
	}
	if status, gen := h.statuses(); gen != st.statusGen {
		st.statusGen = gen
		return out.send("status", status)
	}
	return nil
}

// helloEvent opens every stream: the page resets its state on it, so a
// reconnect never double counts.
type helloEvent struct {
	Mode   string   `json:"mode"`
	Agents []string `json:"agents"`
}

// ServeHTTP is /api/stream: the one data source of the page. It sends the
// records the hub kept, then live ones, as Server-Sent Events: "hello",
// then "edges" (changed map edges), "flows" (new table rows), "lost" (lost
// events) and "status" (every agent's status) as they change.
func (h *flowHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	flt, err := parseFilter(r.URL.Query())
	if err != nil {
		http.Error(w, "filter: "+err.Error(), http.StatusBadRequest)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	out := sse{w: w, f: fl}

	snap, sub := h.subscribe(subBuffer)
	defer h.unsubscribe(sub)
	st := &streamState{flt: flt, g: newGraph()}
	names := make([]string, len(h.sources))
	for i, s := range h.sources {
		names[i] = s.name
	}
	if out.send("hello", helloEvent{Mode: "live", Agents: names}) != nil {
		return
	}
	for _, ev := range snap {
		st.take(ev)
	}
	if st.flush(out, h) != nil {
		return
	}
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for ticks := 1; ; ticks++ {
		select {
		case <-r.Context().Done():
			return
		case ev := <-sub.ch:
			st.take(ev)
			continue
		case <-tick.C:
		}
		if n := sub.takeLost(); n > 0 {
			st.lost = append(st.lost, lostView{Source: "UI_STREAM", Lost: n, Time: time.Now()})
		}
		if st.flush(out, h) != nil {
			return // the page went away
		}
		// A comment now and then keeps proxies from closing a quiet stream.
		if ticks%int(heartbeat/flushEvery) == 0 {
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}
