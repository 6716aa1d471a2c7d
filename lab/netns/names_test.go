package netns

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNames(t *testing.T) {
	assert.Regexp(t, `^fl[0-9a-f]{4}$`, NewPrefix())
	assert.Regexp(t, `^veth[0-9a-f]{8}$`, RandomVethName())
	assert.NoError(t, ValidatePrefix("fl12ab"))
	assert.Error(t, ValidatePrefix("FL"))
	assert.Error(t, ValidatePrefix("fl-x"))
	assert.Equal(t, "flab-demo-frontend", PodNetNS("flab", "demo", "frontend"))
	long := PodNetNS("flab", "namespace-with-a-long-name", "pod-with-an-even-longer-name-0")
	assert.LessOrEqual(t, len(long), maxNetNSName)
	assert.True(t, strings.HasPrefix(long, "flab-"))
	assert.NotEqual(t, long, PodNetNS("flab", "namespace-with-a-long-name", "pod-with-an-even-longer-name-1"))
}
