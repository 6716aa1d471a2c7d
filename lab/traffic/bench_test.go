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
