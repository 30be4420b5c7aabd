package extracttest

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"image"
)

// ScanPDF is a PDF of pages pages without a text layer, each the grey
// image page drawn over the whole page at dpi: a scanned document, as the
// OCR tests and measurements need one of any length.
func ScanPDF(page *image.Gray, dpi, pages int) []byte {
	b := page.Bounds()
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		off := (y - b.Min.Y) * page.Stride
		zw.Write(page.Pix[off : off+b.Dx()])
	}
	zw.Close()
	w, h := float64(b.Dx())*72/float64(dpi), float64(b.Dy())*72/float64(dpi)
	content := fmt.Sprintf("q %.2f 0 0 %.2f 0 0 cm /Im0 Do Q", w, h)
	// Objects: 1 catalog, 2 pages, 3 image, 4 content, then one page each.
	objs := []string{"<< /Type /Catalog /Pages 2 0 R >>", "",
		fmt.Sprintf("<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream",
			b.Dx(), b.Dy(), z.Len(), z.String()),
		fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content)}
	kids := ""
	for i := 0; i < pages; i++ {
		kids += fmt.Sprintf("%d 0 R ", 5+i)
		objs = append(objs, fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Resources << /XObject << /Im0 3 0 R >> >> /Contents 4 0 R >>", w, h))
	}
	objs[1] = fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", kids, pages)
	var out bytes.Buffer
	out.WriteString("%PDF-1.4\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = out.Len()
		fmt.Fprintf(&out, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	return finishPDF(&out, offsets)
}
