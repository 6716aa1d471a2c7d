package ui

import (
	"io"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// staticData is what an inlined page draws instead of a stream.
type staticData struct {
	Mode  string     `json:"mode"`
	Title string     `json:"title"`
	Note  string     `json:"note,omitempty"`
	Edges []edgeView `json:"edges"`
	Flows []flowView `json:"flows"`
}

// WriteMatrix writes the page as one self-contained HTML file showing
// flows computed offline (policy matrix: one flow per pair of pods, its
// verdict the intended one, with the explanation), aggregated on the map
// exactly as live flows are.
func WriteMatrix(w io.Writer, title, note string, flows []*flowlensv1.Flow) error {
	d := staticData{Mode: "matrix", Title: title, Note: note, Flows: make([]flowView, 0, len(flows))}
	g := newGraph()
	for i, fl := range flows {
		v := newFlowView(fl, uint64(i+1))
		g.add(&v)
		d.Flows = append(d.Flows, v)
	}
	d.Edges = g.flush()
	return inlinePage(w, title, d)
}
