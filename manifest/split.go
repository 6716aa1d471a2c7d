package manifest

import "bytes"

// splitDocuments cuts a multi-document YAML stream at "---" lines. A
// separator before any content does not start a new document, so the
// indexes match what a reader counts ("the first document is doc 0").
// Trailing text after "---" other than a comment is left to the YAML decoder
// (it fails on it), so nothing is dropped here.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	start := 0
	content := false // current document has a non-blank, non-comment line
	seen := false    // a document has already been emitted or content seen
	for off := 0; off <= len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		var line []byte
		next := 0
		if end < 0 {
			line = data[off:]
			next = len(data) + 1
		} else {
			line = data[off : off+end]
			next = off + end + 1
		}
		if isSeparator(line) {
			if content || seen {
				docs = append(docs, data[start:off])
			}
			seen = true
			content = false
			start = min(next, len(data))
		} else if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			content = true
		}
		off = next
	}
	if content || (seen && start < len(data)) {
		docs = append(docs, data[start:])
	}
	return docs
}

func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := bytes.TrimSpace(line[3:])
	return len(rest) == 0 || rest[0] == '#'
}
