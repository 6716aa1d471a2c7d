package observer

import (
	"unique"

	"github.com/google/uuid"
)

type uniqueService = unique.Handle[serviceKey]

// parseUUID packs a UUID in its canonical lowercase form; any other
// spelling (upper case, braces, urn:uuid:) would not come back the same.
// Parse takes 36 characters only as the dashed hex form, so that form in
// lower case is exactly what formatUUID gives back (checked without
// formatting: a string per flow, issue 9).
func parseUUID(s string) ([16]byte, bool) {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return u, false
	}
	for i := range len(s) {
		if 'A' <= s[i] && s[i] <= 'F' {
			return u, false
		}
	}
	return u, true
}

func formatUUID(u [16]byte) string { return uuid.UUID(u).String() }
