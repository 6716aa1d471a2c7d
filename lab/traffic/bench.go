package traffic

import (
	"context"
	"fmt"
)

// Overhead prices what Attach starts on the datapath between From and To.
type Overhead struct {
	From, To Endpoint
	Rounds   int // 0 = 3
	Seconds  int // per measurement; 0 = 3
	// Attach starts what is measured and returns what stops it; the "with" measurements of a
	// round run between the two.
	Attach func() (detach func() error, err error)
}

// Figures are the averages over the rounds: [0] without, [1] with.
type Figures struct {
	TCP, UDP [2]float64 // bits/s, received packets/s
	// PacketsWith is how many packets the "with" measurements sent in all.
	PacketsWith float64
}

// Run measures TCP and UDP without, then with, once per round.
func (o Overhead) Run(ctx context.Context) (Figures, error) {
	rounds, secs := o.Rounds, o.Seconds
	if rounds <= 0 {
		rounds = 3
	}
	if secs <= 0 {
		secs = 3
	}
	var f Figures
	measure := func(side int) error {
		for _, udp := range []bool{false, true} {
			r, err := Iperf(ctx, o.From, o.To, udp, secs)
			if err != nil {
				return err
			}
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
	for range rounds {
		if err := measure(0); err != nil {
			return f, err
		}
		detach, err := o.Attach()
		if err != nil {
			return f, fmt.Errorf("attach: %w", err)
		}
		err = measure(1)
		if derr := detach(); derr != nil && err == nil {
			err = fmt.Errorf("detach: %w", derr)
		}
		if err != nil {
			return f, err
		}
	}
	return f, nil
}

// Report prints the figures as benchmark metrics (b is a *testing.B).
func (f Figures) Report(b interface{ ReportMetric(float64, string) }) {
	b.ReportMetric(f.TCP[0]/1e9, "tcp-Gbit/s-without")
	b.ReportMetric(f.TCP[1]/1e9, "tcp-Gbit/s-with")
	b.ReportMetric(f.TCP[1]/f.TCP[0], "tcp-ratio")
	b.ReportMetric(f.UDP[0], "udp64-pps-without")
	b.ReportMetric(f.UDP[1], "udp64-pps-with")
	b.ReportMetric(f.UDP[1]/f.UDP[0], "udp64-ratio")
}
