// Package flowlog writes flows as JSON lines (the protojson encoding of
// flowlens.v1.Flow with proto field names) for Promtail/Alloy to ship to Loki.
package flowlog

import (
	"bufio"
	"fmt"
	"io"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/natefinch/lumberjack.v2"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// Matcher decides which flows are written; filter.Filter implements it.
type Matcher interface {
	Match(*flowlensv1.Flow) bool
}

// Config says where flows go. Path "-" is the given stdout; any other path is
// a file rotated by size.
type Config struct {
	Path       string
	MaxSizeMB  int
	MaxBackups int
	Compress   bool
	// Filter, when set, keeps only the flows it matches.
	Filter Matcher
}

// Writer is safe for concurrent use.
type Writer struct {
	mu     sync.Mutex // guards buf and out
	buf    *bufio.Writer
	out    io.Writer
	closer io.Closer
	filter Matcher
	opts   protojson.MarshalOptions
	line   []byte
}

// New opens the destination. stdout is used when cfg.Path is "-".
func New(cfg Config, stdout io.Writer) (*Writer, error) {
	w := &Writer{
		filter: cfg.Filter,
		opts:   protojson.MarshalOptions{UseProtoNames: true},
	}
	switch cfg.Path {
	case "":
		return nil, fmt.Errorf("flow log path is empty (use - for stdout)")
	case "-":
		w.out = stdout
	default:
		if cfg.MaxSizeMB <= 0 {
			return nil, fmt.Errorf("flow log max size %d MB: must be positive", cfg.MaxSizeMB)
		}
		if cfg.MaxBackups < 0 {
			return nil, fmt.Errorf("flow log max backups %d: must not be negative", cfg.MaxBackups)
		}
		lj := &lumberjack.Logger{
			Filename:   cfg.Path,
			MaxSize:    cfg.MaxSizeMB,
			MaxBackups: cfg.MaxBackups,
			Compress:   cfg.Compress,
		}
		// Open now so a bad path is reported at startup, not at the first flow.
		if _, err := lj.Write(nil); err != nil {
			return nil, fmt.Errorf("open flow log %s: %w", cfg.Path, err)
		}
		w.out, w.closer = lj, lj
	}
	w.buf = bufio.NewWriterSize(w.out, 64<<10)
	return w, nil
}

// Write appends one flow as a JSON line. Lines are buffered; Flush makes them
// visible.
func (w *Writer) Write(fl *flowlensv1.Flow) error {
	if w.filter != nil && !w.filter.Match(fl) {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var ok bool
	if w.line, ok = appendFlow(w.line[:0], fl); !ok {
		var err error
		if w.line, err = w.opts.MarshalAppend(w.line[:0], fl); err != nil {
			return fmt.Errorf("encode flow: %w", err)
		}
	}
	w.line = append(w.line, '\n')
	if _, err := w.buf.Write(w.line); err != nil {
		return fmt.Errorf("write flow log: %w", err)
	}
	return nil
}

// Flush writes buffered lines out.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("flush flow log: %w", err)
	}
	return nil
}

// Close flushes and closes a file destination.
func (w *Writer) Close() error {
	err := w.Flush()
	if w.closer != nil {
		if cerr := w.closer.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close flow log: %w", cerr)
		}
	}
	return err
}
