package flowlog

import (
	"testing"

	"go.uber.org/goleak"
)

// A goroutine left running after the tests is a failure, except
// lumberjack's compression goroutine: v2.2.1 starts it on the first
// rotation-capable write and never stops it (one per Logger, idle), a
// known upstream limitation.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}
