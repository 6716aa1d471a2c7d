// Package signal is the one coalescing wake-up used across flowlens: a
// writer says "something changed" without blocking and without caring how
// many times it already said so, and a single reader wakes once per burst
// and then looks at the current state. The reader must re-read state after
// each wake-up: the signal carries no data and any number of Notify calls
// may fold into one receive.
package signal

// Signal is a capacity-1 channel: Notify never blocks and one pending
// notification stands for any number of them. The zero value is not usable;
// call New. Give each Signal one reader: two readers steal each other's
// wake-ups.
type Signal struct {
	c chan struct{}
}

// New returns a Signal with nothing pending.
func New() *Signal { return &Signal{c: make(chan struct{}, 1)} }

// Notify marks the signal pending. It never blocks: when a notification is
// already pending, the reader has yet to look, and will see this change too.
func (s *Signal) Notify() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// C receives once per burst of Notify calls.
func (s *Signal) C() <-chan struct{} { return s.c }

// Drain clears a pending notification, for owners that have just read the
// state themselves (a constructor that filled it).
func (s *Signal) Drain() {
	select {
	case <-s.c:
	default:
	}
}
