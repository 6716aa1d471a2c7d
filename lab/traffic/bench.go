package traffic

import (
	"context"
	"fmt"
	"slices"
)

// Overhead prices what Attach starts on the datapath between From and To.
type Overhead struct {
	From, To Endpoint
	Rounds   int // interleaved pairs; 0 = 3
	Seconds  int // per measurement; 0 = 3
	// Attach starts what is measured and returns what stops it; the "with" measurements of a
	// round run between the two.
	Attach func() (detach func() error, err error)
}

// Figures are the means over the rounds ([0] without, [1] with) and each round's ratio.
type Figures struct {
	TCP, UDP [2]float64 // bits/s, received packets/s
	// TCPRatios and UDPRatios are with/without of each round's pair, in round order. The
	// median of them is the figure: one disturbed measurement moves it least.
	TCPRatios, UDPRatios []float64
	// PacketsWith is how many packets the "with" measurements sent in all.
	PacketsWith float64
}

// Run measures TCP and UDP without and with, as one interleaved pair per round: the two
// sides of a pair run back to back, and every other round runs "with" first, so a drift of
// the machine's load during the run weighs on both sides alike.
func (o Overhead) Run(ctx context.Context) (Figures, error) {
	rounds, secs := o.Rounds, o.Seconds
	if rounds <= 0 {
		rounds = 3
	}
	if secs <= 0 {
		secs = 3
	}
	var f Figures
	measure := func(side int, rate *[2]float64) error {
		for _, udp := range []bool{false, true} {
			r, err := Iperf(ctx, o.From, o.To, udp, secs)
			if err != nil {
				return err
			}
			rate[btoi(udp)] = r.Rate
			if udp {
				f.UDP[side] += r.Rate / float64(rounds)
			} else {
				f.TCP[side] += r.Rate / float64(rounds)
			}
			if side == 1 {
				f.PacketsWith += r.Packets
			}
		}
		return nil
	}
	with := func(rate *[2]float64) error {
		detach, err := o.Attach()
		if err != nil {
			return fmt.Errorf("attach: %w", err)
		}
		err = measure(1, rate)
		if derr := detach(); derr != nil && err == nil {
			err = fmt.Errorf("detach: %w", derr)
		}
		return err
	}
	for round := range rounds {
		var off, on [2]float64 // [0] TCP, [1] UDP
		steps := []func() error{func() error { return measure(0, &off) }, func() error { return with(&on) }}
		if round%2 == 1 {
			slices.Reverse(steps)
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return f, err
			}
		}
		f.TCPRatios = append(f.TCPRatios, on[0]/off[0])
		f.UDPRatios = append(f.UDPRatios, on[1]/off[1])
	}
	return f, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Report prints the figures as benchmark metrics (b is a *testing.B): the ratios are the
// medians over the rounds' pairs with their quartiles and, from 6 pairs on, the 95 %
// confidence interval of the median (MedianCI): a goal is shown met when the interval's
// lower end clears it, missed when its upper end does not reach it. The rates are the means.
func (f Figures) Report(b interface{ ReportMetric(float64, string) }) {
	b.ReportMetric(f.TCP[0]/1e9, "tcp-Gbit/s-without")
	b.ReportMetric(f.TCP[1]/1e9, "tcp-Gbit/s-with")
	reportRatios(b, "tcp-ratio", f.TCPRatios)
	b.ReportMetric(f.UDP[0], "udp64-pps-without")
	b.ReportMetric(f.UDP[1], "udp64-pps-with")
	reportRatios(b, "udp64-ratio", f.UDPRatios)
	b.ReportMetric(float64(len(f.TCPRatios)), "pairs")
}

func reportRatios(b interface{ ReportMetric(float64, string) }, name string, xs []float64) {
	b.ReportMetric(Median(xs), name)
	b.ReportMetric(Quantile(xs, 0.25), name+"-q1")
	b.ReportMetric(Quantile(xs, 0.75), name+"-q3")
	if lo, hi, _, ok := MedianCI(xs, 0.95); ok {
		b.ReportMetric(lo, name+"-ci95-lo")
		b.ReportMetric(hi, name+"-ci95-hi")
	}
}
