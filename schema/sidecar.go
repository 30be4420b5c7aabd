package schema

import "strings"

// A document's metadata file (a sidecar) sits beside it, named by its key
// and SidecarSuffix — Bedrock's and Kendra's convention:
// report.pdf.metadata.json holds report.pdf's attributes. A sidecar is
// never indexed as a document of its own; its attributes go on its
// document's chunks (see docs/architecture.md, "Document metadata").
const SidecarSuffix = ".metadata.json"

// MaxSidecarBytes bounds a sidecar (Bedrock's limit): a larger one is the
// tenant's error, reported on its document.
const MaxSidecarBytes = 10 << 10

// IsSidecar reports whether key names a sidecar.
func IsSidecar(key string) bool {
	return len(key) > len(SidecarSuffix) && strings.HasSuffix(key, SidecarSuffix)
}

// SidecarKey is the key of key's sidecar.
func SidecarKey(key string) string { return key + SidecarSuffix }

// SidecarDocument is the key of the document a sidecar's key describes.
func SidecarDocument(sidecar string) string { return strings.TrimSuffix(sidecar, SidecarSuffix) }
