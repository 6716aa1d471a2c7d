package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// parseQueries reads the JSON array of queries. It is a small scanner for
// this one flat shape rather than encoding/json, which spent more time than
// evaluation itself on a million queries; anything outside the shape
// (unknown keys, nested values, bad numbers) is an error naming the query.
// Strings without escapes point into data (which must not be modified
// afterwards) instead of being copied: a million queries would otherwise
// be two million small allocations.
func parseQueries(path string, data []byte) ([]rawQuery, error) {
	s := scanner{data: data}
	s.space()
	if !s.eat('[') {
		return nil, fmt.Errorf("%s: want a JSON array of queries", path)
	}
	var out []rawQuery
	s.space()
	if s.eat(']') {
		return s.end(path, out)
	}
	for {
		q, err := s.query()
		if err != nil {
			return nil, fmt.Errorf("%s: query %d: %w", path, len(out), err)
		}
		out = append(out, q)
		s.space()
		if s.eat(',') {
			s.space()
			continue
		}
		if s.eat(']') {
			return s.end(path, out)
		}
		return nil, fmt.Errorf("%s: after query %d: want , or ] at offset %d", path, len(out)-1, s.pos)
	}
}

type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) end(path string, out []rawQuery) ([]rawQuery, error) {
	s.space()
	if s.pos != len(s.data) {
		return nil, fmt.Errorf("%s: trailing data after the array at offset %d", path, s.pos)
	}
	return out, nil
}

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

func (s *scanner) query() (rawQuery, error) {
	var q rawQuery
	if !s.eat('{') {
		return q, fmt.Errorf("want an object at offset %d", s.pos)
	}
	s.space()
	if s.eat('}') {
		return q, nil
	}
	seen := 0
	for {
		s.space()
		key, err := s.str()
		if err != nil {
			return q, err
		}
		s.space()
		if !s.eat(':') {
			return q, fmt.Errorf("want : after %q at offset %d", key, s.pos)
		}
		s.space()
		bit := 0
		switch key {
		case "src":
			q.Src, err = s.str()
			bit = 1
		case "dst":
			q.Dst, err = s.str()
			bit = 2
		case "protocol":
			q.Protocol, err = s.str()
			bit = 4
		case "port":
			q.Port, err = s.port()
			bit = 8
		default:
			return q, fmt.Errorf("unknown field %q", key)
		}
		if err != nil {
			return q, fmt.Errorf("%s: %w", key, err)
		}
		if seen&bit != 0 {
			return q, fmt.Errorf("duplicate field %q", key)
		}
		seen |= bit
		s.space()
		if s.eat(',') {
			continue
		}
		if s.eat('}') {
			return q, nil
		}
		return q, fmt.Errorf("want , or } at offset %d", s.pos)
	}
}

func (s *scanner) str() (string, error) {
	if !s.eat('"') {
		return "", fmt.Errorf("want a string at offset %d", s.pos)
	}
	start := s.pos
	escaped := false
	for {
		end := bytes.IndexByte(s.data[s.pos:], '"')
		if end < 0 {
			return "", fmt.Errorf("unterminated string at offset %d", start-1)
		}
		// An odd run of backslashes before the quote escapes it.
		q := s.pos + end
		n := 0
		for k := q - 1; k >= start && s.data[k] == '\\'; k-- {
			n++
		}
		s.pos = q + 1
		if n%2 == 0 {
			break
		}
		escaped = true
	}
	raw := s.data[start : s.pos-1]
	for i, c := range raw {
		if c < 0x20 {
			return "", fmt.Errorf("control character in string at offset %d", start+i)
		}
		if c == '\\' || c >= utf8.RuneSelf {
			escaped = true
		}
	}
	if escaped && (bytes.IndexByte(raw, '\\') >= 0 || !utf8.Valid(raw)) {
		var v string
		if err := json.Unmarshal(s.data[start-1:s.pos], &v); err != nil {
			return "", fmt.Errorf("string at offset %d: %w", start-1, err)
		}
		return v, nil
	}
	if len(raw) == 0 {
		return "", nil
	}
	return unsafe.String(&raw[0], len(raw)), nil
}

func (s *scanner) port() (uint16, error) {
	start := s.pos
	for s.pos < len(s.data) && (s.data[s.pos] >= '0' && s.data[s.pos] <= '9' || s.data[s.pos] == '-' || s.data[s.pos] == '.' || s.data[s.pos] == 'e' || s.data[s.pos] == 'E' || s.data[s.pos] == '+') {
		s.pos++
	}
	num := s.data[start:s.pos]
	n, err := strconv.ParseUint(string(num), 10, 16)
	if err != nil || (len(num) > 1 && num[0] == '0') {
		return 0, fmt.Errorf("want an integer 0-65535 at offset %d, got %q", start, s.data[start:s.pos])
	}
	return uint16(n), nil
}
