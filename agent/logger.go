package agent

import (
	"io"
	"log/slog"

	"github.com/flowlens/flowlens/enrich"
)

// NewLogger builds the agent's logger from --log-level/--log-format and
// routes client-go's klog output through it, so one stream carries both.
func NewLogger(cfg Config, w io.Writer) (*slog.Logger, error) {
	level, err := cfg.SlogLevel()
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	log := slog.New(h)
	enrich.BridgeKlog(log.With("component", "client-go"))
	return log, nil
}
