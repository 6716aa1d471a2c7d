package signal

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func pending(s *Signal) bool {
	select {
	case <-s.C():
		return true
	default:
		return false
	}
}

func TestSignal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		notify  int
		drain   bool
		pending bool
	}{
		{"nothing pending", 0, false, false},
		{"one notify, one wake-up", 1, false, true},
		{"a burst folds into one wake-up", 100, false, true},
		{"drain clears", 3, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			for range tc.notify {
				s.Notify()
			}
			if tc.drain {
				s.Drain()
			}
			assert.Equal(t, tc.pending, pending(s))
			assert.False(t, pending(s), "at most one wake-up per burst")
		})
	}
}

// Notify never blocks, even with many writers and no reader.
func TestNotifyNeverBlocks(t *testing.T) {
	s := New()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				s.Notify()
			}
		}()
	}
	wg.Wait()
	assert.True(t, pending(s))
	assert.False(t, pending(s))
}
