// Package extract turns object bytes into text, or says why it cannot.
// Version 1 handles text: UTF-8 (with or without a byte-order mark) and
// UTF-16 with a byte-order mark. Everything else is skipped with a reason,
// never retried: binary content (sniffed, not trusted from Content-Type),
// other encodings, and objects over the size cap.
package extract

import (
	"bytes"
	"net/http"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Version is part of every chunk ID: bump it when extraction output changes,
// so re-indexing produces new IDs instead of silently different text.
const Version = "text/1"

// Skip reasons.
const (
	ReasonBinary    = "unsupported_type"
	ReasonNotUTF8   = "not_utf8"
	ReasonTooLarge  = "too_large"
	ReasonDirectory = "directory_marker"
)

// Result is the outcome of extraction: Text, or a non-empty SkipReason.
type Result struct {
	Text       string
	SkipReason string // empty on success
	Detail     string // e.g. the sniffed content type
}

// Text extracts text from data.
func Text(data []byte) Result {
	switch {
	case bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}):
		data = data[3:]
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}), bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		return fromUTF16(data)
	}
	head := data
	if len(head) > 8192 {
		head = head[:8192]
	}
	if ct := http.DetectContentType(head); !strings.HasPrefix(ct, "text/") && ct != "application/json" && len(data) > 0 {
		return Result{SkipReason: ReasonBinary, Detail: ct}
	}
	if bytes.IndexByte(head, 0) >= 0 {
		return Result{SkipReason: ReasonBinary, Detail: "contains NUL bytes"}
	}
	if !utf8.Valid(data) {
		return Result{SkipReason: ReasonNotUTF8, Detail: "not valid UTF-8"}
	}
	return Result{Text: string(data)}
}

func fromUTF16(data []byte) Result {
	if len(data)%2 != 0 {
		return Result{SkipReason: ReasonNotUTF8, Detail: "odd-length UTF-16"}
	}
	bigEndian := data[0] == 0xFE
	u := make([]uint16, 0, len(data)/2-1)
	for i := 2; i+1 < len(data); i += 2 {
		if bigEndian {
			u = append(u, uint16(data[i])<<8|uint16(data[i+1]))
		} else {
			u = append(u, uint16(data[i+1])<<8|uint16(data[i]))
		}
	}
	return Result{Text: string(utf16.Decode(u))}
}
