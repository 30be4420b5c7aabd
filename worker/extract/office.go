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

	"github.com/stevedore-dev/stevedore/schema"
)

// Office documents (DOCX, PPTX, ODT/ODP/ODS) and EPUB e-books are zip
// containers. A zip is read from its end (the central directory), so the
// object is spooled to a temporary file (at most MaxContainerBytes), and its
// XML parts are read with caps on each entry and on the whole, so a zip bomb
// ends as a skip, not as memory.
const (
	OfficeVersion = "office/2" // DOCX, PPTX, OpenDocument, XLSX (2: Word notes, headers and footers; spreadsheet cells as displayed)
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

// spoolFile copies the rest of br to an unlinked temporary file (at most
// MaxContainerBytes) and returns it with its size.
func spoolFile(br io.Reader, what string) (*os.File, int64, error) {
	f, err := os.CreateTemp("", "stevedore-spool-*")
	if err != nil {
		return nil, 0, err
	}
	_ = os.Remove(f.Name()) // gone when closed, whatever happens
	n, err := io.Copy(f, io.LimitReader(br, MaxContainerBytes+1))
	if err != nil {
		f.Close()
		return nil, 0, asSkip(err)
	}
	if n > MaxContainerBytes {
		f.Close()
		return nil, 0, &Skip{ReasonTooLarge, fmt.Sprintf("a %s over %d bytes", what, MaxContainerBytes)}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

// spool copies the rest of br to a temporary file and opens it as a zip.
func spool(br io.Reader) (*container, error) {
	f, n, err := spoolFile(br, "zip container")
	if err != nil {
		return nil, err
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
		return nil, &Skip{ReasonCorrupt, "missing part " + schema.Quote(name)}
	}
	if zf.Flags&0x1 != 0 {
		return nil, &Skip{ReasonEncrypted, "encrypted part " + schema.Quote(name)}
	}
	if zf.UncompressedSize64 > maxEntryBytes || int64(zf.UncompressedSize64) > c.left {
		return nil, &Skip{ReasonDecompressedTooLarge, fmt.Sprintf("part %s decompresses to %d bytes", schema.Quote(name), zf.UncompressedSize64)}
	}
	if zf.CompressedSize64 > 0 && zf.UncompressedSize64/zf.CompressedSize64 > maxRatio {
		return nil, &Skip{ReasonDecompressedTooLarge, fmt.Sprintf("part %s has a compression ratio over %d", schema.Quote(name), maxRatio)}
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

// maxPackageBytes caps a package part that is read whole and decoded in
// one go (container.xml, an EPUB's package document, a workbook and its
// relationships, slide relationships): real ones are kilobytes, and one of
// megabytes of entries would be hundreds of megabytes once decoded.
const maxPackageBytes = 4 << 20

// read reads a package part whole (at most maxPackageBytes).
func (c *container) read(name string) ([]byte, error) {
	if zf := c.files[name]; zf != nil && zf.UncompressedSize64 > maxPackageBytes {
		return nil, &Skip{ReasonTooLarge, fmt.Sprintf("package part %s of %d bytes, over %d", schema.Quote(name), zf.UncompressedSize64, maxPackageBytes)}
	}
	rc, err := c.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return b, asSkip(err)
}

// maxMimetypeBytes is as much of a container's mimetype part as is read:
// every real one is shorter; a tenant's may be megabytes.
const maxMimetypeBytes = 128

// readHead reads at most n bytes of a part.
func (c *container) readHead(name string, n int64) ([]byte, error) {
	rc, err := c.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, n))
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
		m, err := c.readHead("mimetype", maxMimetypeBytes)
		if err != nil {
			return "", "", err
		}
		switch mt := strings.TrimSpace(string(m)); {
		case mt == "application/epub+zip":
			return mt, EPUBVersion, nil
		case strings.HasPrefix(mt, "application/vnd.oasis.opendocument.") && c.files["content.xml"] != nil:
			return mt, OfficeVersion, nil
		default:
			return "", "", &Skip{ReasonBinary, "a zip whose mimetype is " + schema.Quote(mt)}
		}
	}
	if c.files["xl/workbook.xml"] != nil {
		return xlsxType, OfficeVersion, nil
	}
	return "", "", &Skip{ReasonBinary, "application/zip"}
}

// parts lists the XML parts to read, in reading order, for kind.
func (c *container) parts(kind string, structured bool) ([]string, error) {
	switch {
	case strings.HasSuffix(kind, "wordprocessingml.document"):
		return c.wordParts(structured), nil
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

// wordParts are a Word document's parts in the order a reader takes them
// in: its headers (each once, however many pages repeat it), the body, its
// footers, footnotes and endnotes, and with structured processing its
// comments — each found through the body's relationships.
func (c *container) wordParts(structured bool) []string {
	rels, _ := c.read("word/_rels/document.xml.rels")
	kinds := [][]string{{"header"}, nil, {"footer"}, {"footnotes"}, {"endnotes"}}
	if structured {
		kinds = append(kinds, []string{"comments"})
	}
	var out []string
	seen := map[string]bool{}
	for _, k := range kinds {
		if k == nil {
			out = append(out, "word/document.xml")
			continue
		}
		for _, target := range relTargets(rels, k[0]) {
			if p := path.Clean(path.Join("word", target)); c.files[p] != nil && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
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

// officeText writes the text of one XML part of a DOCX, PPTX or
// OpenDocument: character data of text runs; paragraphs, list items, table
// rows and slides end lines; table cells are joined by " | ". Headings
// (Word's Title and Heading N styles, OpenDocument's text:h) set the
// heading path; structured output writes them as Markdown headings and
// tables as Markdown rows with a separator row after the first.
type officeText struct {
	w          *docWriter
	kind       string   // the document's content type
	slide      int      // OpenDocument presentation: draw:page elements so far
	titles     []string // and their titles, read beforehand (odpTitles)
	structured bool
	inText     int  // depth inside text-bearing elements
	cellOpen   bool // a table cell has started in this row
	cells      int  // cells in this row (structured)
	rows       int  // rows so far in this table (structured)
	inCell     bool
	cellSpace  bool // a paragraph ended in this cell: a space before more text
	headLevel  int  // the paragraph being read is a heading of this level
	head       strings.Builder
	skip       int // depth inside an element whose text a reader does not see (Word's moved-from text, note separators)
}

func (o *officeText) out(s string) {
	switch {
	case o.headLevel > 0:
		o.head.WriteString(s)
	case o.structured && o.inCell:
		if o.cellSpace {
			o.w.WriteByte(' ')
			o.cellSpace = false
		}
		o.w.WriteString(strings.NewReplacer("|", `\|`, "\n", " ").Replace(s))
	default:
		o.w.WriteString(s)
	}
}

func isODF(n xml.Name) bool { return strings.Contains(n.Space, "opendocument") }

func attr(t xml.StartElement, local string) string {
	for _, a := range t.Attr {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// wordHeading is the heading level of a Word paragraph style ("Title",
// "Heading1" … "Heading9"), 0 for other styles.
func wordHeading(style string) int {
	s := strings.ToLower(strings.ReplaceAll(style, " ", ""))
	if s == "title" {
		return 1
	}
	if rest, ok := strings.CutPrefix(s, "heading"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 1 && n <= 9 {
			return n
		}
	}
	return 0
}

// startHeading begins a heading of level, clamped to 1–9 (an OpenDocument
// outline level is any number a tenant writes).
func (o *officeText) startHeading(level int) {
	if level > 0 && o.headLevel == 0 && !o.inCell {
		o.headLevel = min(level, maxHeadingLevel)
		o.head.Reset()
	}
}

// endHeading records the heading's section and writes its text.
func (o *officeText) endHeading() {
	level := o.headLevel
	o.headLevel = 0
	text := strings.TrimSpace(o.head.String())
	o.w.log.atHeading(o.w.offset(), level, text)
	if o.structured && text != "" {
		o.w.WriteString(strings.Repeat("#", level) + " ")
	}
	o.w.WriteString(o.head.String())
}

func (o *officeText) token(tok xml.Token) {
	switch t := tok.(type) {
	case xml.StartElement:
		if !o.startWord(t) {
			o.start(t)
		}
	case xml.EndElement:
		if o.skip > 0 {
			o.skip--
			return
		}
		o.end(t)
	case xml.CharData:
		if o.inText > 0 && o.skip == 0 {
			o.out(string(t))
		}
	}
}

// startWord handles what only Word documents hold, and reports whether the
// element is done with: text moved elsewhere is read where it went (a
// tracked move's old place is skipped, as deletions are: their text is
// w:delText), a note reference is written as [id] where it stands and a
// note starts with its [id], a comment with its author; separator notes
// hold no text.
func (o *officeText) startWord(t xml.StartElement) bool {
	if o.skip > 0 {
		o.skip++
		return true
	}
	if !strings.Contains(t.Name.Space, "wordprocessingml") {
		return false
	}
	switch t.Name.Local {
	case "moveFrom":
		o.skip = 1
		return true
	case "footnote", "endnote":
		if typ := attr(t, "type"); typ != "" && typ != "normal" {
			o.skip = 1
			return true
		}
		o.out("[" + attr(t, "id") + "] ")
	case "footnoteReference", "endnoteReference":
		o.out("[" + attr(t, "id") + "]")
	case "comment":
		o.out("Comment (" + attr(t, "author") + "): ")
	}
	return false
}

// start handles an element's start tag.
func (o *officeText) start(t xml.StartElement) {
	switch t.Name.Local {
	case "t": // w:t (Word), a:t (DrawingML: slides)
		o.inText++
	case "p", "h": // text:p / text:h (OpenDocument): their character data is text
		if isODF(t.Name) {
			o.inText++
			if t.Name.Local == "h" {
				level, _ := strconv.Atoi(attr(t, "outline-level"))
				o.startHeading(max(level, 1))
			}
		}
	case "pStyle":
		o.startHeading(wordHeading(attr(t, "val")))
	case "tab":
		o.out("\t")
	case "br", "cr", "line-break":
		o.out("\n")
	case "s": // text:s, a run of spaces
		if isODF(t.Name) {
			o.out(" ")
		}
	case "tbl", "table":
		o.startTable(t)
	case "page": // draw:page, a slide of an OpenDocument presentation
		if isODF(t.Name) {
			o.slide++
			title := ""
			if o.slide <= len(o.titles) {
				title = o.titles[o.slide-1]
			}
			o.w.log.atSlide(o.w.offset(), o.slide, title)
		}
	case "tr", "table-row":
		o.cells = 0
	case "tc", "table-cell":
		switch {
		case o.structured && o.cells == 0:
			o.w.WriteString("| ")
		case o.structured || o.cellOpen:
			o.w.WriteString(" | ")
		}
		o.cellOpen, o.inCell, o.cellSpace = true, true, false
		o.cells++
	}
}

// startTable starts a table; a spreadsheet's tables are its sheets, and
// the sheet's name is the heading.
func (o *officeText) startTable(t xml.StartElement) {
	o.rows = 0
	if isODF(t.Name) && strings.HasSuffix(o.kind, ".spreadsheet") {
		if name := attr(t, "name"); name != "" {
			o.w.log.atHeading(o.w.offset(), 1, name)
			if o.structured {
				o.w.WriteString("## " + name + "\n\n")
			}
		}
	}
}

// end handles an element's end tag.
func (o *officeText) end(t xml.EndElement) {
	switch t.Name.Local {
	case "t":
		o.inText--
	case "p", "h":
		if isODF(t.Name) {
			o.inText--
		}
		if o.headLevel > 0 {
			o.endHeading()
		}
		switch {
		case !o.cellOpen:
			o.w.WriteByte('\n')
		case o.structured && o.inCell:
			o.cellSpace = true
		}
	case "tc", "table-cell":
		o.inCell = false
	case "tr", "table-row":
		if o.structured && o.cells > 0 {
			o.w.WriteString(" |")
			if o.rows == 0 {
				o.w.WriteString("\n|" + strings.Repeat(" --- |", o.cells))
			}
			o.rows++
		}
		o.w.WriteByte('\n')
		o.cellOpen = false
	}
}

// writeText writes the text of one XML part of kind to w.
func writeText(w *docWriter, r io.Reader, kind string, structured bool, titles []string) error {
	if kind == "application/epub+zip" {
		_, err := io.Copy(w, newHTMLText(r, structured, w.log, w.offset()))
		return err
	}
	o := &officeText{w: w, structured: structured, kind: kind, titles: titles}
	return walkXML(r, "XML", o.token)
}

// odpTitles reads the title of each slide (draw:page) of an OpenDocument
// presentation: the text of its frame of presentation:class "title".
func odpTitles(r io.Reader) []string {
	var titles []string
	var buf strings.Builder
	inTitle := 0 // depth inside a title frame
	_ = walkXML(r, "content", func(tok xml.Token) {
		switch t := tok.(type) {
		case xml.StartElement:
			switch {
			case t.Name.Local == "page" && isODF(t.Name):
				titles = append(titles, "")
			case t.Name.Local == "frame" && attr(t, "class") == "title" && len(titles) > 0:
				inTitle = 1
				buf.Reset()
			case inTitle > 0:
				inTitle++
				if t.Name.Local == "p" && buf.Len() > 0 {
					buf.WriteByte(' ')
				}
			}
		case xml.EndElement:
			if inTitle > 0 {
				if inTitle--; inTitle == 0 && titles[len(titles)-1] == "" {
					titles[len(titles)-1] = strings.TrimSpace(buf.String())
				}
			}
		case xml.CharData:
			if inTitle > 0 && buf.Len() < maxHeadingBytes {
				buf.Write(t)
			}
		}
	})
	return titles
}

// slideTitle reads a slide's title: the text of its title placeholder
// shape (type title or ctrTitle).
func slideTitle(r io.Reader) string {
	var buf strings.Builder
	title := ""
	depth, shape, isTitle, inT := 0, 0, false, false
	_ = walkXML(r, "slide", func(tok xml.Token) {
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch t.Name.Local {
			case "sp":
				if shape == 0 {
					shape, isTitle = depth, false
					buf.Reset()
				}
			case "ph":
				if ty := attr(t, "type"); ty == "title" || ty == "ctrTitle" {
					isTitle = true
				}
			case "t":
				inT = shape > 0
			case "p":
				if shape > 0 && buf.Len() > 0 {
					buf.WriteByte(' ')
				}
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "t":
				inT = false
			case "sp":
				if depth == shape {
					if isTitle && title == "" {
						title = strings.TrimSpace(buf.String())
					}
					shape = 0
				}
			}
			depth--
		case xml.CharData:
			if inT && buf.Len() < maxHeadingBytes {
				buf.Write(t)
			}
		}
	})
	return title
}

// maxXMLDepth caps element nesting: the decoder keeps a record per open
// element, so a part of a million nested elements must not become memory.
const maxXMLDepth = 1000

// walkXML hands visit every token of r (the part named part); a malformed
// part is a corrupt_archive skip, one nested deeper than maxXMLDepth too.
// Entities are never expanded.
func walkXML(r io.Reader, part string, visit func(xml.Token)) error {
	d := xml.NewDecoder(r)
	depth := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &Skip{ReasonCorrupt, part + ": " + err.Error()}
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth++; depth > maxXMLDepth {
				return &Skip{ReasonCorrupt, fmt.Sprintf("%s: elements nested over %d deep", part, maxXMLDepth)}
			}
		case xml.EndElement:
			depth--
		}
		visit(tok)
	}
}

// openContainer spools a zip container and returns a reader of its text
// (written by a goroutine as the consumer reads), the detected type and the
// extractor version. Sections (headings, slides, sheets) go to log.
func openContainer(br io.Reader, structured bool, log *sectionLog) (*bufio.Reader, io.Closer, string, string, error) {
	c, err := spool(br)
	if err != nil {
		return nil, nil, "", "", err
	}
	kind, version, err := c.kind()
	if err == nil {
		var names []string
		if names, err = c.parts(kind, structured); err == nil {
			pr, pw := io.Pipe()
			go func() {
				pw.CloseWithError(c.writeAll(newDocWriter(pw, log), kind, names, structured))
			}()
			return bufio.NewReaderSize(pr, sniffBytes), closers{pr, c.f}, kind, version, nil
		}
	}
	c.f.Close()
	return nil, nil, "", "", err
}

// writeAll writes the text of the container's parts in reading order.
func (c *container) writeAll(w *docWriter, kind string, names []string, structured bool) error {
	if kind == xlsxType {
		if err := c.writeXLSX(w, structured); err != nil {
			return err
		}
		return w.Flush()
	}
	slide := 0
	for i, name := range names {
		if strings.HasPrefix(name, "ppt/slides/slide") {
			slide++
			rc, err := c.open(name)
			if err != nil {
				return err
			}
			title := slideTitle(rc)
			rc.Close()
			w.log.atSlide(w.offset(), slide, title)
		}
		var titles []string
		if strings.HasSuffix(kind, ".presentation") && strings.HasPrefix(kind, "application/vnd.oasis") {
			rc, err := c.open(name)
			if err != nil {
				return err
			}
			titles = odpTitles(rc)
			rc.Close()
		}
		rc, err := c.open(name)
		if err != nil {
			return err
		}
		err = writeText(w, rc, kind, structured, titles)
		rc.Close()
		if err != nil {
			return err
		}
		if i < len(names)-1 {
			w.WriteByte('\n')
		}
	}
	return w.Flush()
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

// writeXLSX writes each visible sheet, in workbook order, as its name on a
// line and then one line per visible row, cells joined by " | ": shared
// strings, inline strings, booleans as TRUE/FALSE, formulas by their cached
// value, numbers as their number format shows them (numfmt.go). Hidden
// sheets and rows are left out, as a reader does not see them.
func (c *container) writeXLSX(w *docWriter, structured bool) error {
	raw, err := c.read("xl/workbook.xml")
	if err != nil {
		return err
	}
	var wb struct {
		Pr struct {
			Date1904 string `xml:"date1904,attr"`
		} `xml:"workbookPr"`
		Sheets []struct {
			Name  string `xml:"name,attr"`
			State string `xml:"state,attr"`
			ID    string `xml:"http://schemas.openxmlformats.org/officeDocument/2006/relationships id,attr"`
		} `xml:"sheets>sheet"`
	}
	if err := xml.Unmarshal(raw, &wb); err != nil {
		return &Skip{ReasonCorrupt, "workbook: " + err.Error()}
	}
	formats := &cellFormats{date1904: wb.Pr.Date1904 == "1" || wb.Pr.Date1904 == "true"}
	if styles, err := c.read("xl/styles.xml"); err == nil {
		formats.codes = parseStyles(styles)
	}
	target := c.workbookTargets()
	shared := &sharedTable{}
	if zf := c.files["xl/sharedStrings.xml"]; zf != nil {
		if zf.UncompressedSize64 > maxSharedStrings {
			return &Skip{ReasonDecompressedTooLarge, "a shared-string table over the cap"}
		}
		if shared, err = c.sharedStrings(); err != nil {
			return err
		}
	}
	written := 0
	for _, sh := range wb.Sheets {
		name := target[sh.ID]
		if name == "" || c.files[name] == nil || sh.State == "hidden" || sh.State == "veryHidden" {
			continue
		}
		if written++; written > 1 {
			w.WriteByte('\n')
		}
		w.log.atHeading(w.offset(), 1, sh.Name)
		if structured {
			w.WriteString("## " + sh.Name + "\n\n")
		} else {
			w.WriteString(sh.Name + "\n")
		}
		rc, err := c.open(name)
		if err != nil {
			return err
		}
		err = writeSheet(w, rc, shared, formats, structured)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// workbookTargets maps the workbook's relationship IDs to their parts
// (xl/worksheets/sheet1.xml …); none when its relationships are unreadable.
func (c *container) workbookTargets() map[string]string {
	target := map[string]string{}
	rels, err := c.read("xl/_rels/workbook.xml.rels")
	if err != nil {
		return target
	}
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
	return target
}

// sharedTable is an XLSX's shared strings held compactly: their text end
// to end and where each ends (4 bytes an entry, not a string header of 16
// and an allocation), so 32 MiB of empty entries is not 300 MiB of memory.
type sharedTable struct {
	text strings.Builder
	ends []uint32
}

func (t *sharedTable) len() int { return len(t.ends) }

func (t *sharedTable) at(i int) string {
	start := uint32(0)
	if i > 0 {
		start = t.ends[i-1]
	}
	return t.text.String()[start:t.ends[i]]
}

// maxSharedEntries caps the entries of a shared-string table (Excel's own
// workbooks stay far below it).
const maxSharedEntries = 1 << 20

func (c *container) sharedStrings() (*sharedTable, error) {
	rc, err := c.open("xl/sharedStrings.xml")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	t := &sharedTable{}
	inT, over := false, false
	err = walkXML(rc, "shared strings", func(tok xml.Token) {
		switch tk := tok.(type) {
		case xml.StartElement:
			if tk.Name.Local == "t" {
				inT = true
			}
		case xml.EndElement:
			switch tk.Name.Local {
			case "si":
				if len(t.ends) == maxSharedEntries {
					over = true
					return
				}
				t.ends = append(t.ends, uint32(t.text.Len()))
			case "t":
				inT = false
			}
		case xml.CharData:
			if inT && !over {
				t.text.Write(tk)
			}
		}
	})
	if err == nil && over {
		return nil, &Skip{ReasonTooLarge, fmt.Sprintf("a shared-string table of over %d entries", maxSharedEntries)}
	}
	return t, err
}

// writeSheet streams one worksheet's rows.
func writeSheet(w *docWriter, r io.Reader, shared *sharedTable, formats *cellFormats, structured bool) error {
	sw := &sheetWriter{w: w, shared: shared, formats: formats, structured: structured}
	return walkXML(r, "worksheet", sw.token)
}

// sheetWriter writes one worksheet's rows, a line each (a Markdown table
// when structured).
type sheetWriter struct {
	w           *docWriter
	shared      *sharedTable
	formats     *cellFormats
	structured  bool
	hiddenRow   bool
	style       int // the cell's style index (its number format)
	cellType    string
	val         strings.Builder
	inV         bool
	cells, rows int
}

func (sw *sheetWriter) token(tok xml.Token) {
	switch t := tok.(type) {
	case xml.StartElement:
		switch t.Name.Local {
		case "row":
			sw.cells = 0
			sw.hiddenRow = attr(t, "hidden") == "1" || attr(t, "hidden") == "true"
		case "c":
			sw.cellType = attr(t, "t")
			sw.style, _ = strconv.Atoi(attr(t, "s"))
			sw.val.Reset()
		case "v", "t":
			sw.inV = true
		}
	case xml.EndElement:
		switch t.Name.Local {
		case "v", "t":
			sw.inV = false
		case "c":
			if !sw.hiddenRow {
				sw.endCell()
			}
		case "row":
			sw.endRow()
		}
	case xml.CharData:
		if sw.inV {
			sw.val.Write(t)
		}
	}
}

var cellEscaper = strings.NewReplacer("|", `\|`, "\n", " ")

// endCell writes the cell's value (a shared string by its index).
func (sw *sheetWriter) endCell() {
	text := sw.val.String()
	switch sw.cellType {
	case "s":
		if i, err := strconv.Atoi(strings.TrimSpace(text)); err == nil && i >= 0 && i < sw.shared.len() {
			text = sw.shared.at(i)
		}
	case "b":
		text = map[string]string{"1": "TRUE", "0": "FALSE"}[strings.TrimSpace(text)]
	case "", "n":
		if text != "" {
			text = sw.formats.display(text, sw.style)
		}
	}
	if text == "" {
		return
	}
	switch {
	case sw.structured && sw.cells == 0:
		sw.w.WriteString("| ")
		text = cellEscaper.Replace(text)
	case sw.structured:
		sw.w.WriteString(" | ")
		text = cellEscaper.Replace(text)
	case sw.cells > 0:
		sw.w.WriteString(" | ")
	}
	sw.w.WriteString(text)
	sw.cells++
}

// endRow ends a row that had cells (the header row is followed by the
// Markdown separator).
func (sw *sheetWriter) endRow() {
	if sw.cells == 0 {
		return
	}
	if sw.structured {
		sw.w.WriteString(" |")
		if sw.rows == 0 {
			sw.w.WriteString("\n|" + strings.Repeat(" --- |", sw.cells))
		}
		sw.rows++
	}
	sw.w.WriteByte('\n')
}
