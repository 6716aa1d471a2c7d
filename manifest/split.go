package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"k8s.io/apimachinery/pkg/util/yaml"
)

// SplitDocuments cuts a multi-document YAML stream at "---" lines with apimachinery's YAML
// reader, the one kubectl uses. A leading part holding only comments (a file header before the
// first "---") is not counted, so the indexes match what a reader counts ("the first document is
// doc 0"). On a malformed separator it returns the documents before it and the reader's error,
// so the caller can name the bad document: len(docs).
func SplitDocuments(data []byte) ([][]byte, error) {
	r := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for first := true; ; first = false {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		// The reader keeps a leading "---" in the first document: one that starts with it came
		// after a separator and counts, even when empty.
		if first && !bytes.HasPrefix(doc, []byte("---")) && !hasContent(doc) {
			continue
		}
		docs = append(docs, doc)
	}
}

// hasContent reports whether doc has a line that is neither blank nor a comment.
func hasContent(doc []byte) bool {
	for line := range bytes.Lines(doc) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			return true
		}
	}
	return false
}
