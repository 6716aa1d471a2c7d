package traffic

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// RunScenario starts the scenario's servers and runs every case every ~2 s until ctx is done,
// logging each attempt and whether it was allowed.
func RunScenario(ctx context.Context, l Lab, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := StartServers(l)
	if err != nil {
		return fmt.Errorf("start servers: %w", err)
	}
	defer s.Close()
	var outside *Servers
	if len(l.ExternalCases()) > 0 {
		if outside, err = StartExternalServers(l); err != nil {
			return fmt.Errorf("start outside servers: %w", err)
		}
		defer outside.Close()
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for round := 1; ; round++ {
		for _, c := range l.Scenario().Cases {
			if ctx.Err() != nil {
				return nil
			}
			r := RunCase(ctx, l, s, c)
			attrs := []any{"round", round, "case", c.Name, "from", c.From, "to", c.To + c.Service,
				"proto", c.Protocol, "port", c.Port, "allowed", r.Allowed, "expected", c.Allowed,
				"sent", r.Sent, "got", r.Got}
			if r.Err != nil {
				attrs = append(attrs, "err", r.Err)
			}
			if r.OK() {
				log.Info("traffic", attrs...)
			} else {
				log.Warn("traffic: unexpected verdict", attrs...)
			}
		}
		if outside != nil {
			runExternalRound(ctx, l, s, outside, round, log)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// runExternalRound runs the cases with an end outside the cluster once.
func runExternalRound(ctx context.Context, l Lab, pods, outside *Servers, round int, log *slog.Logger) {
	for _, c := range l.ExternalCases() {
		if ctx.Err() != nil {
			return
		}
		r := RunExternalCase(ctx, l, pods, outside, c, 0)
		attrs := []any{"round", round, "case", c.Name, "pod", c.Pod, "peer", c.Peer, "inbound", c.Inbound,
			"proto", c.Protocol, "port", c.Port, "allowed", r.Allowed, "expected", c.Allowed}
		if r.Err != nil {
			attrs = append(attrs, "err", r.Err)
		}
		if r.Allowed == c.Allowed {
			log.Info("traffic", attrs...)
		} else {
			log.Warn("traffic: unexpected verdict", attrs...)
		}
	}
}
