package agent

import (
	"testing"

	"go.uber.org/goleak"
)

// A goroutine left running after the tests is a failure.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
