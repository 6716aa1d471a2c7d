package aggregate

import (
	"log/slog"
	"testing"

	"github.com/flowlens/flowlens/internal/testenv"
)

func testLogger(t testing.TB) *slog.Logger { return testenv.Logger(t) }
