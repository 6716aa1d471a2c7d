// Package proto holds the flowlens.v1 API definitions; the generated Go lives
// in flowlens/v1.
package proto

//go:generate go tool -modfile=../tools/buf/go.mod buf generate
//go:generate go tool -modfile=../tools/buf/go.mod buf lint
