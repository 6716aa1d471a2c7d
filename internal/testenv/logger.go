package testenv

import (
	"log/slog"
	"testing"
)

// Logger writes a component's debug log into the test's output, so it
// shows beside the failure that it explains.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
