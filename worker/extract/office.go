package extract

import (
	"archive/zip"
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Office documents (DOCX, PPTX, ODT/ODP/ODS) and EPUB e-books are zip
// containers. A zip is read from its end (the central directory), so the
// object is spooled to a temporary file (at most MaxContainerBytes), and its
// XML parts are read with caps on each entry and on the whole, so a zip bomb
// ends as a skip, not as memory.
const (
	OfficeVersion = "office/1" // DOCX, PPTX, OpenDocument
	EPUBVersion   = "epub/1"   // EPUB (its XHTML through the HTML extractor)

	MaxContainerBytes = 512 << 20 // larger containers are skipped (too_large)
	maxEntryBytes     = 128 << 20 // one XML part, decompressed
	maxTotalBytes     = 512 << 20 // all parts read, decompressed
	maxRatio          = 200       // decompressed:compressed of one part
)

// container is an opened zip spooled to a temporary file.
type container struct {
	f     *os.File
	zr    *zip.Reader
	files map[string]*zip.File
	left  int64 // decompressed bytes still allowed
}

// spool copies the rest of br to a temporary file and opens it as a zip.
func spool(br io.Reader) (*container, error) {
	f, err := os.CreateTemp("", "stevedore-container-*")
	if err != nil {
		return nil, err
	}
	_ = os.Remove(f.Name()) // gone when closed, whatever happens
	n, err := io.Copy(f, io.LimitReader(br, MaxContainerBytes+1))
	if err != nil {
		f.Close()
		return nil, asSkip(err)
	}
	if n > MaxContainerBytes {
		f.Close()
		return nil, &Skip{ReasonTooLarge, fmt.Sprintf("a zip container over %d bytes", MaxContainerBytes)}
	}
	zr, err := zip.NewReader(f, n)
	if err != nil {
		f.Close()
		return nil, &Skip{ReasonCorrupt, "not a readable zip: " + err.Error()}
	}
	c := &container{f: f, zr: zr, files: map[string]*zip.File{}, left: maxTotalBytes}
	for _, zf := range zr.File {
		c.files[zf.Name] = zf
	}
	return c, nil
}

// open opens one part, refusing encrypted, oversized and bomb-shaped ones.
func (c *container) open(name string) (io.ReadCloser, error) {
	zf := c.files[name]
	if zf == nil {
		return nil, &Skip{ReasonCorrupt, "missing part " + name}
	}
	if zf.Flags&0x1 != 0 {
		return nil, &Skip{ReasonEncrypted, "encrypted part " + name}
	}
	if zf.UncompressedSize64 > maxEntryBytes || int64(zf.UncompressedSize64) > c.left {
		return nil, &Skip{ReasonDecompressedTooLarge, fmt.Sprintf("part %s decompresses to %d bytes", name, zf.UncompressedSize64)}
	}
	if zf.CompressedSize64 > 0 && zf.UncompressedSize64/zf.CompressedSize64 > maxRatio {
		return nil, &Skip{ReasonDecompressedTooLarge, fmt.Sprintf("part %s has a compression ratio over %d", name, maxRatio)}
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, &Skip{ReasonCorrupt, err.Error()}
	}
	limit := int64(zf.UncompressedSize64)
	c.left -= limit
	return struct {
		io.Reader
		io.Closer
	}{&capped{r: rc, left: limit}, rc}, nil
}

func (c *container) read(name string) ([]byte, error) {
	rc, err := c.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return b, asSkip(err)
}

// kind tells the container's format from its parts.
func (c *container) kind() (string, string, error) {
	switch {
	case c.files["word/document.xml"] != nil:
		return "application/vnd.openxmlformats-officedocument.wordprocessingml.document", OfficeVersion, nil
	case c.files["ppt/presentation.xml"] != nil:
		return "application/vnd.openxmlformats-officedocument.presentationml.presentation", OfficeVersion, nil
	case c.files["EncryptionInfo"] != nil || c.files["EncryptedPackage"] != nil:
		return "", "", &Skip{ReasonEncrypted, "a password-protected Office document"}
	}
	if c.files["mimetype"] != nil {
		m, err := c.read("mimetype")
		if err != nil {
			return "", "", err
		}
		switch mt := strings.TrimSpace(string(m)); {
		case mt == "application/epub+zip":
			return mt, EPUBVersion, nil
		case strings.HasPrefix(mt, "application/vnd.oasis.opendocument.") && c.files["content.xml"] != nil:
			return mt, OfficeVersion, nil
		default:
			return "", "", &Skip{ReasonBinary, mt}
		}
	}
	if c.files["xl/workbook.xml"] != nil {
		return xlsxType, OfficeVersion, nil
	}
	return "", "", &Skip{ReasonBinary, "application/zip"}
}

// parts lists the XML parts to read, in reading order, for kind.
func (c *container) parts(kind string) ([]string, error) {
	switch {
	case strings.HasSuffix(kind, "wordprocessingml.document"):
		return []string{"word/document.xml"}, nil
	case strings.HasSuffix(kind, "presentationml.presentation"):
		return c.slides(), nil
	case strings.HasPrefix(kind, "application/vnd.oasis.opendocument."):
		return []string{"content.xml"}, nil
	case kind == "application/epub+zip":
		return c.spine()
	case kind == xlsxType:
		return []string{"xl/workbook.xml"}, nil // writeXLSX walks the sheets itself
	}
	return nil, &Skip{ReasonBinary, kind}
}

// slides are ppt/slides/slideN.xml in slide order, each followed by its
// speaker notes when it has them.
func (c *container) slides() []string {
	type slide struct {
		n    int
		name string
	}
	var ss []slide
	for name := range c.files {
		if rest, ok := strings.CutPrefix(name, "ppt/slides/slide"); ok && strings.HasSuffix(rest, ".xml") {
			if n, err := strconv.Atoi(strings.TrimSuffix(rest, ".xml")); err == nil {
				ss = append(ss, slide{n, name})
			}
		}
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].n < ss[j].n })
	var out []string
	for _, s := range ss {
		out = append(out, s.name)
		if rels, err := c.read(fmt.Sprintf("ppt/slides/_rels/slide%d.xml.rels", s.n)); err == nil {
			for _, target := range relTargets(rels, "notesSlide") {
				if p := path.Clean(path.Join("ppt/slides", target)); c.files[p] != nil {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// relTargets returns the Target of relationships whose Type ends in kind.
func relTargets(rels []byte, kind string) []string {
	var doc struct {
		Rel []struct {
			Type   string `xml:"Type,attr"`
			Target string `xml:"Target,attr"`
		} `xml:"Relationship"`
	}
	_ = xml.Unmarshal(rels, &doc)
	var out []string
	for _, r := range doc.Rel {
		if strings.HasSuffix(r.Type, "/"+kind) {
			out = append(out, r.Target)
		}
	}
	return out
}

// spine lists an EPUB's XHTML documents in reading order (its OPF spine).
func (c *container) spine() ([]string, error) {
	raw, err := c.read("META-INF/container.xml")
	if err != nil {
		return nil, err
	}
	var ctr struct {
		Rootfiles []struct {
			Path string `xml:"full-path,attr"`
		} `xml:"rootfiles>rootfile"`
	}
	if err := xml.Unmarshal(raw, &ctr); err != nil || len(ctr.Rootfiles) == 0 {
		return nil, &Skip{ReasonCorrupt, "EPUB without a rootfile"}
	}
	opfPath := ctr.Rootfiles[0].Path
	raw, err = c.read(opfPath)
	if err != nil {
		return nil, err
	}
	var opf struct {
		Items []struct {
			ID   string `xml:"id,attr"`
			Href string `xml:"href,attr"`
		} `xml:"manifest>item"`
		Refs []struct {
			IDRef string `xml:"idref,attr"`
		} `xml:"spine>itemref"`
	}
	if err := xml.Unmarshal(raw, &opf); err != nil {
		return nil, &Skip{ReasonCorrupt, "EPUB package document: " + err.Error()}
	}
	href := map[string]string{}
	for _, it := range opf.Items {
		href[it.ID] = it.Href
	}
	var out []string
	for _, r := range opf.Refs {
		if h, ok := href[r.IDRef]; ok {
			out = append(out, path.Join(path.Dir(opfPath), h))
		}
	}
	return out, nil
}

// writeText writes the text of one XML part of kind to w: character data
// of text runs; paragraphs, list items, table rows and slides end lines;
// table cells are joined by " | ".
func writeText(w *bufio.Writer, r io.Reader, kind string) error {
	if kind == "application/epub+zip" {
		_, err := io.Copy(w, newHTMLText(r))
		return err
	}
	var inText int // depth inside text-bearing elements
	cellStarted := false
	return walkXML(r, "XML", func(tok xml.Token) {
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "t": // w:t (Word), a:t (DrawingML: slides)
				inText++
			case "p", "h": // text:p / text:h (OpenDocument): their character data is text
				if strings.Contains(t.Name.Space, "opendocument") {
					inText++
				}
			case "tab":
				w.WriteByte('\t')
			case "br", "cr", "line-break":
				w.WriteByte('\n')
			case "s": // text:s, a run of spaces
				if strings.Contains(t.Name.Space, "opendocument") {
					w.WriteByte(' ')
				}
			case "tc", "table-cell":
				if cellStarted {
					w.WriteString(" | ")
				}
				cellStarted = true
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "t":
				inText--
			case "p", "h":
				if strings.Contains(t.Name.Space, "opendocument") {
					inText--
				}
				if !cellStarted {
					w.WriteByte('\n')
				}
			case "tr", "table-row":
				w.WriteByte('\n')
				cellStarted = false
			}
		case xml.CharData:
			if inText > 0 {
				w.Write(t)
			}
		}
	})
}

// walkXML hands visit every token of r (the part named part); a malformed
// part is a corrupt_archive skip. Entities are never expanded.
func walkXML(r io.Reader, part string, visit func(xml.Token)) error {
	d := xml.NewDecoder(r)
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &Skip{ReasonCorrupt, part + ": " + err.Error()}
		}
		visit(tok)
	}
}

// openContainer spools a zip container and returns a reader of its text
// (written by a goroutine as the consumer reads), the detected type and the
// extractor version.
func openContainer(br io.Reader) (*bufio.Reader, io.Closer, string, string, error) {
	c, err := spool(br)
	if err != nil {
		return nil, nil, "", "", err
	}
	kind, version, err := c.kind()
	if err == nil {
		var names []string
		if names, err = c.parts(kind); err == nil {
			pr, pw := io.Pipe()
			go func() {
				bw := bufio.NewWriterSize(pw, 64<<10)
				var werr error
				if kind == xlsxType {
					werr = c.writeXLSX(bw)
					names = nil
				}
				for i, name := range names {
					rc, err := c.open(name)
					if err != nil {
						werr = err
						break
					}
					werr = writeText(bw, rc, kind)
					rc.Close()
					if werr != nil {
						break
					}
					if i < len(names)-1 {
						bw.WriteByte('\n')
					}
				}
				if werr == nil {
					werr = bw.Flush()
				}
				pw.CloseWithError(werr)
			}()
			return bufio.NewReaderSize(pr, sniffBytes), closers{pr, c.f}, kind, version, nil
		}
	}
	c.f.Close()
	return nil, nil, "", "", err
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

const xlsxType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

// maxSharedStrings caps the shared-string table an XLSX may bring (it is
// held in memory while the sheets are read).
const maxSharedStrings = 32 << 20

// writeXLSX writes each sheet, in workbook order, as its name on a line and
// then one line per row, cells joined by " | ": shared strings, inline
// strings and values as stored (numbers unformatted).
func (c *container) writeXLSX(w *bufio.Writer) error {
	raw, err := c.read("xl/workbook.xml")
	if err != nil {
		return err
	}
	var wb struct {
		Sheets []struct {
			Name string `xml:"name,attr"`
			ID   string `xml:"http://schemas.openxmlformats.org/officeDocument/2006/relationships id,attr"`
		} `xml:"sheets>sheet"`
	}
	if err := xml.Unmarshal(raw, &wb); err != nil {
		return &Skip{ReasonCorrupt, "workbook: " + err.Error()}
	}
	target := map[string]string{}
	if rels, err := c.read("xl/_rels/workbook.xml.rels"); err == nil {
		var doc struct {
			Rel []struct {
				ID     string `xml:"Id,attr"`
				Target string `xml:"Target,attr"`
			} `xml:"Relationship"`
		}
		_ = xml.Unmarshal(rels, &doc)
		for _, r := range doc.Rel {
			target[r.ID] = path.Clean(path.Join("xl", r.Target))
		}
	}
	var shared []string
	if zf := c.files["xl/sharedStrings.xml"]; zf != nil {
		if zf.UncompressedSize64 > maxSharedStrings {
			return &Skip{ReasonDecompressedTooLarge, "a shared-string table over the cap"}
		}
		if shared, err = c.sharedStrings(); err != nil {
			return err
		}
	}
	for i, sh := range wb.Sheets {
		name := target[sh.ID]
		if name == "" || c.files[name] == nil {
			continue
		}
		if i > 0 {
			w.WriteByte('\n')
		}
		w.WriteString(sh.Name + "\n")
		rc, err := c.open(name)
		if err != nil {
			return err
		}
		err = writeSheet(w, rc, shared)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *container) sharedStrings() ([]string, error) {
	rc, err := c.open("xl/sharedStrings.xml")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var out []string
	var cur strings.Builder
	inT := false
	err = walkXML(rc, "shared strings", func(tok xml.Token) {
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "si":
				cur.Reset()
			case "t":
				inT = true
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "si":
				out = append(out, cur.String())
			case "t":
				inT = false
			}
		case xml.CharData:
			if inT {
				cur.Write(t)
			}
		}
	})
	return out, err
}

// writeSheet streams one worksheet's rows.
func writeSheet(w *bufio.Writer, r io.Reader, shared []string) error {
	var cellType string
	var val strings.Builder
	inV, cells := false, 0
	return walkXML(r, "worksheet", func(tok xml.Token) {
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "row":
				cells = 0
			case "c":
				cellType = ""
				for _, a := range t.Attr {
					if a.Name.Local == "t" {
						cellType = a.Value
					}
				}
				val.Reset()
			case "v", "t":
				inV = true
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "v", "t":
				inV = false
			case "c":
				text := val.String()
				if cellType == "s" {
					if i, err := strconv.Atoi(strings.TrimSpace(text)); err == nil && i >= 0 && i < len(shared) {
						text = shared[i]
					}
				}
				if text == "" {
					return
				}
				if cells > 0 {
					w.WriteString(" | ")
				}
				w.WriteString(text)
				cells++
			case "row":
				if cells > 0 {
					w.WriteByte('\n')
				}
			}
		case xml.CharData:
			if inV {
				val.Write(t)
			}
		}
	})
}
