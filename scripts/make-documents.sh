#!/usr/bin/env bash
# Regenerates the document fixtures from known text, once; the outputs are
# committed (scripts/testdata/corpus/documents/ for the demo corpus,
# worker/extract/testdata/ for the extractor's bad-input cases), so tests and
# `make demo` never need these tools. Needs Debian's pandoc, LibreOffice
# (writer, calc, impress) and iconv:
#   apt-get install pandoc libreoffice-writer libreoffice-calc libreoffice-impress
# The quality test (worker/extract/quality_test.go) compares what stevedore
# extracts from each file with the source text it was made from.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/scripts/testdata/documents
out=$root/scripts/testdata/corpus/documents
bad=$root/worker/extract/testdata
mkdir -p "$out" "$bad"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export HOME=$tmp # LibreOffice writes its profile here

# The reference text the extracted text is measured against.
pandoc "$src/source.md" -t plain --wrap=none -s -o "$src/source.txt"

pandoc "$src/source.md" -s -o "$out/handbook.docx"
pandoc "$src/source.md" -s -o "$out/handbook.odt"
pandoc "$src/source.md" -s -o "$out/handbook.epub" --metadata lang=en
pandoc "$src/source.md" -s -o "$out/handbook.html" --metadata lang=en
pandoc "$src/source.md" -s -o "$out/handbook.pptx" --slide-level 2
# PDF with bookmarks from the headings (LibreOffice exports them by default).
soffice --headless --convert-to pdf --outdir "$tmp" "$out/handbook.docx" >/dev/null
mv "$tmp/handbook.pdf" "$out/handbook.pdf"
# A spreadsheet from the crane table.
soffice --headless --infilter=CSV:44,34,76,1 --convert-to xlsx --outdir "$tmp" "$src/cranes.csv" >/dev/null
mv "$tmp/cranes.xlsx" "$out/cranes.xlsx"
# The OpenDocument spreadsheet and presentation, by LibreOffice from the above.
soffice --headless --convert-to ods --outdir "$out" "$out/cranes.xlsx" >/dev/null
soffice --headless --convert-to odp --outdir "$out" "$out/handbook.pptx" >/dev/null
# A CSV export from an old system: windows-1252.
iconv -f UTF-8 -t WINDOWS-1252 "$src/suppliers.csv" > "$out/suppliers-cp1252.csv"

# Bad input for the extractor's tests: a scanned page (an image, no text
# layer) and a password-protected PDF.
python3 - "$tmp/scan.png" <<'PY'
import struct, sys, zlib
w = h = 64
raw = b"".join(b"\x00" + bytes((x * 4 + y * 2) % 256 for x in range(w)) for y in range(h))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
soffice --headless --convert-to pdf --outdir "$tmp" "$tmp/scan.png" >/dev/null
mv "$tmp/scan.pdf" "$bad/scanned.pdf"
soffice --headless --convert-to 'pdf:writer_pdf_Export:{"EncryptFile":{"type":"boolean","value":"true"},"DocumentOpenPassword":{"type":"string","value":"secret"}}' \
	--outdir "$tmp" "$out/handbook.odt" >/dev/null
mv "$tmp/handbook.pdf" "$bad/encrypted.pdf"
ls -l "$out" "$bad"/*.pdf
