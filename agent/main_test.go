package agent

import (
	"testing"

	"go.uber.org/goleak"
)

// A goroutine left running after the tests is a failure, except
// lumberjack's compression goroutine (see agent/flowlog/main_test.go).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}
