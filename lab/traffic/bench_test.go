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
