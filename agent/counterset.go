package agent

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxLabels is the most variable labels a counterSet's families have.
const maxLabels = 6

// seriesKey is one series' label values, in the order of the set's label
// names; the unused tail is empty.
type seriesKey [maxLabels]string

// seriesValues are the counts of one label set, one per family.
type seriesValues struct {
	created int64 // unix nanoseconds, the counters' created timestamp
	counts  [3]uint64
}

// counterSet holds counter families that share their label names (flows,
// packets and bytes are counted together) as plain values, one map entry
// per label set, and builds the exposition at scrape time. A CounterVec
// keeps, per series and family, a counter object with its label pairs as
// protobuf messages and its created timestamp as one more: about 700 bytes,
// three times over, where an entry here is under 200 (issue 9). Scrapes
// and counting see the same values, labels, names and created timestamps
// a CounterVec would show.
type counterSet struct {
	names []string
	descs []*prometheus.Desc

	mu     sync.Mutex // guards series
	series map[seriesKey]*seriesValues
}

// newCounterSet makes one counter family per opts (at most three), all
// labelled by names.
func newCounterSet(names []string, opts ...prometheus.CounterOpts) *counterSet {
	s := &counterSet{names: names, series: map[seriesKey]*seriesValues{}}
	for _, o := range opts[:min(len(opts), len(seriesValues{}.counts))] {
		s.descs = append(s.descs, prometheus.NewDesc(prometheus.BuildFQName(o.Namespace, o.Subsystem, o.Name), o.Help, names, o.ConstLabels))
	}
	return s
}

// family is one family of the set as a Collector, for the registry.
func (s *counterSet) family(i int) *counterFamily { return &counterFamily{set: s, i: i} }

// keyOf packs label values, in the order of the names.
func keyOf(vals ...string) seriesKey {
	var k seriesKey
	copy(k[:], vals)
	return k
}

// add adds to the counts of a label set, creating it (at zero) first if
// need be.
func (s *counterSet) add(k *seriesKey, counts ...uint64) {
	s.mu.Lock()
	v := s.series[*k]
	if v == nil {
		v = &seriesValues{created: time.Now().UnixNano()}
		s.series[*k] = v
	}
	for i, c := range counts {
		v.counts[i] += c
	}
	s.mu.Unlock()
}

// deleteMatching deletes the label sets match selects from every family.
func (s *counterSet) deleteMatching(match func(*seriesKey) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.series {
		if match(&k) {
			delete(s.series, k)
		}
	}
}

// collect builds family i's metrics as the library's constant counters,
// which carry the created timestamp and sort the label pairs by name.
func (s *counterSet) collect(i int) []prometheus.Metric {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]prometheus.Metric, 0, len(s.series))
	for k, v := range s.series {
		out = append(out, prometheus.MustNewConstMetricWithCreatedTimestamp(s.descs[i], prometheus.CounterValue,
			float64(v.counts[i]), time.Unix(0, v.created), k[:len(s.names)]...))
	}
	return out
}

// counterFamily is one family of a counterSet.
type counterFamily struct {
	set *counterSet
	i   int
}

// Describe implements prometheus.Collector.
func (f *counterFamily) Describe(ch chan<- *prometheus.Desc) { ch <- f.set.descs[f.i] }

// Collect implements prometheus.Collector; it sends after the set's lock
// is released, so a slow scrape never holds up counting.
func (f *counterFamily) Collect(ch chan<- prometheus.Metric) {
	for _, m := range f.set.collect(f.i) {
		ch <- m
	}
}
