package traffic

import (
	"math"
	"slices"
)

// Median is the middle of xs (the mean of the two middle ones for an even count), 0 for none.
func Median(xs []float64) float64 { return Quantile(xs, 0.5) }

// Quantile is the q-quantile of xs (0 <= q <= 1), interpolated linearly between the two
// nearest values; 0 for none. The quartiles of the pairs' ratios are their spread: a median
// is trustworthy when the range between them is narrow next to the effect measured.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	pos := q * float64(len(s)-1)
	i := int(pos)
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[i] + (pos-float64(i))*(s[i+1]-s[i])
}

// MedianCI is a confidence interval, at level conf (0.95 for 95 %), for the median of what
// xs sample: the order statistics x(j) and x(n+1-j), with j the largest rank for which fewer
// than j of n samples fall below the true median with a chance of at most (1-conf)/2
// (binomial, n, 1/2). It assumes nothing of the distribution, only independent samples,
// which interleaved pairs on a drifting machine come closest to; so it answers whether a
// median ratio meets a goal or the run was too short to tell. coverage is the interval's
// actual level (at least conf: the ranks are whole); ok is false when n is too small for
// conf (fewer than 6 samples at 95 %).
func MedianCI(xs []float64, conf float64) (lo, hi, coverage float64, ok bool) {
	n := len(xs)
	tail := (1 - conf) / 2
	var below float64 // P(B <= j-1), B ~ Binomial(n, 1/2)
	j := 0
	for k := 0; k < n; k++ {
		p := binomHalf(n, k)
		if below+p > tail {
			break
		}
		below += p
		j = k + 1
	}
	if j == 0 {
		return 0, 0, 0, false
	}
	s := slices.Sorted(slices.Values(xs))
	return s[j-1], s[n-j], 1 - 2*below, true
}

// binomHalf is P(B = k) for B ~ Binomial(n, 1/2), through logarithms so that 2^-n does not
// underflow for the hundreds of pairs a long run may have.
func binomHalf(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return math.Exp(a - b - c - float64(n)*math.Ln2)
}
