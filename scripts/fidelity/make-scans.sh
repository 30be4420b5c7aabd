#!/usr/bin/env bash
# Makes the scanned fixtures of worker/extract's OCR tests from the demo
# handbook with producers the other fixtures do not use: Ghostscript renders
# its pages (and writes the reference text of each page with its txtwrite
# device), ImageMagick degrades them as scanners and phones do. The outputs
# are committed; run only to change them. Needs Debian's ghostscript and
# imagemagick:
#   apt-get install ghostscript imagemagick
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pdf=$root/scripts/testdata/corpus/documents/handbook.pdf
out=$root/scripts/testdata/corpus/scans
ref=$root/scripts/testdata/documents/scans
mkdir -p "$out" "$ref"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gs=(gs -q -dNOPAUSE -dBATCH -dSAFER)

# Reference text per page.
# txtwrite writes the font's ligature glyphs (fi, ff, fl) as U+6600 U+6900
# U+6C00: mapped back to their letters.
for p in 1 2; do
  "${gs[@]}" -sDEVICE=txtwrite -dFirstPage=$p -dLastPage=$p -sOutputFile=- "$pdf" |
    sed 's/\xe6\x98\x80/f/g; s/\xe6\xa4\x80/i/g; s/\xe6\xb0\x80/l/g; s/^ *//' >"$ref/handbook-p$p.txt"
done

# A clean 300 dpi scan of page 1 as an image-only PDF (no text layer): the
# page in grey, deflated, wrapped by a minimal PDF writer.
"${gs[@]}" -sDEVICE=pgmraw -r300 -dFirstPage=1 -dLastPage=1 -sOutputFile="$tmp/p1.pgm" "$pdf"
python3 "$root/scripts/fidelity/pgm2pdf.py" "$tmp/p1.pgm" 300 "$out/scan-300dpi.pdf"

# A 200 dpi fax: pages 1 and 2 as one two-page CCITT G4 TIFF.
"${gs[@]}" -sDEVICE=tiffg4 -r200 -dFirstPage=1 -dLastPage=2 -sOutputFile="$out/fax-200dpi-g4.tiff" "$pdf"

# A phone photo of page 2: 200 dpi, turned 3 degrees, blurred a little,
# JPEG at quality 60.
"${gs[@]}" -sDEVICE=pnggray -r200 -dFirstPage=2 -dLastPage=2 -sOutputFile="$tmp/p2.png" "$pdf"
convert "$tmp/p2.png" -background white -rotate 3 -blur 0x0.6 -quality 60 "$out/photo-skewed.jpg"

# Page 1 scanned sideways (turned 90 degrees), 200 dpi PNG.
"${gs[@]}" -sDEVICE=pnggray -r200 -dFirstPage=1 -dLastPage=1 -sOutputFile="$tmp/p1.png" "$pdf"
convert "$tmp/p1.png" -rotate 90 "$out/sideways.png"

# Page 1 as a lossy WebP (quality 50), as web uploads come.
convert "$tmp/p1.png" -quality 50 "$out/page.webp"
ls -l "$out" "$ref"
