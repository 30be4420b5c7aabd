"""Wraps a binary PGM page into a one-page PDF with no text layer: the
image deflated (FlateDecode, DeviceGray) and drawn over the whole page.
Usage: pgm2pdf.py page.pgm DPI out.pdf"""
import sys
import zlib

src, dpi, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = open(src, "rb").read()
fields, rest = [], data
while len(fields) < 4:
    rest = rest.lstrip()
    token, _, rest = rest.partition(b"\n") if rest.startswith(b"#") else (None, None, rest)
    if token is not None:
        continue
    end = min(i for i in (rest.find(b" "), rest.find(b"\n")) if i >= 0)
    fields.append(rest[:end])
    rest = rest[end:]
magic, width, height, _ = fields[0], int(fields[1]), int(fields[2]), fields[3]
assert magic == b"P5", magic
pixels = rest[1:1 + width * height]
image = zlib.compress(pixels, 9)
w_pt, h_pt = width * 72 / dpi, height * 72 / dpi
content = f"q {w_pt:.2f} 0 0 {h_pt:.2f} 0 0 cm /Im0 Do Q".encode()
objects = [
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w_pt:.2f} {h_pt:.2f}] /Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>".encode(),
    f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode /Length {len(image)} >>\nstream\n".encode() + image + b"\nendstream",
    f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream",
]
out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
offsets = []
for i, body in enumerate(objects, 1):
    offsets.append(len(out))
    out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
xref = len(out)
out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
for off in offsets:
    out += f"{off:010d} 00000 n \n".encode()
out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
open(dst, "wb").write(out)
