package traffic

import "testing"

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want float64
	}{
		{"none", nil, 0},
		{"one", []float64{0.9}, 0.9},
		{"odd, unsorted", []float64{0.99, 0.5, 0.97}, 0.97},
		{"even: mean of the middle two", []float64{1.0, 0.9, 0.5, 0.96}, 0.93},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Median(tc.in); got < tc.want-1e-9 || got > tc.want+1e-9 {
				t.Fatalf("Median(%v) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{0.97, 1.01, 0.90, 0.99, 1.05}
	for _, tc := range []struct {
		q, want float64
	}{
		{0, 0.90}, {0.25, 0.97}, {0.5, 0.99}, {0.75, 1.01}, {1, 1.05},
		{0.125, 0.935}, // halfway between 0.90 and 0.97
	} {
		if got := Quantile(xs, tc.q); got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("Quantile(%v, %v) = %v, want %v", xs, tc.q, got, tc.want)
		}
	}
	if got := Quantile(nil, 0.5); got != 0 {
		t.Errorf("Quantile(nil) = %v, want 0", got)
	}
}

func TestMedianCI(t *testing.T) {
	// seq is 1..n in a shuffled order (7 is prime to every n below), so the interval's ends are its ranks.
	seq := func(n int) []float64 {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = float64((i*7)%n + 1)
		}
		return xs
	}
	for _, tc := range []struct {
		n        int
		conf     float64
		ok       bool
		lo, hi   float64 // ranks, from the binomial tables
		coverage float64
	}{
		{5, 0.95, false, 0, 0, 0}, // even the extremes cover only 93.75 %
		{5, 0.90, true, 1, 5, 0.9375},
		{6, 0.95, true, 1, 6, 0.96875},
		{9, 0.95, true, 2, 8, 0.9609375},
		{10, 0.95, true, 2, 9, 0.978515625},
		{25, 0.95, true, 8, 18, 0.9567147},
		{45, 0.95, true, 16, 30, 0.9643022},
		{45, 0.90, true, 17, 29, 0.9275457},
		{100, 0.95, true, 40, 61, 0.9647998},
		{2000, 0.95, true, 956, 1045, 0.9534472}, // 2^-2000 underflows: logarithms
	} {
		lo, hi, cov, ok := MedianCI(seq(tc.n), tc.conf)
		if ok != tc.ok {
			t.Errorf("n=%d conf=%v: ok %v, want %v", tc.n, tc.conf, ok, tc.ok)
			continue
		}
		if lo != tc.lo || hi != tc.hi {
			t.Errorf("n=%d conf=%v: [%v, %v], want [%v, %v]", tc.n, tc.conf, lo, hi, tc.lo, tc.hi)
		}
		if cov < tc.coverage-1e-3 || cov > tc.coverage+1e-3 || (ok && cov < tc.conf) {
			t.Errorf("n=%d conf=%v: coverage %v, want %v", tc.n, tc.conf, cov, tc.coverage)
		}
	}
}
