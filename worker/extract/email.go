package extract

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"path"
	"strings"

	"golang.org/x/net/html/charset"

	"github.com/stevedore-dev/stevedore/schema"
)

// E-mail (.eml, message/rfc822) is read as its reader sees it: the headers
// that matter (From, To, Cc, Date, Subject), the text body — the text/plain
// part of an alternative, else the HTML part through the HTML extractor —
// and then each attachment as a section of the same document (its heading
// "Attachment: <name>"), read by the extractor its content calls for (a PDF,
// a Word file, an image by OCR, a forwarded message …) with the same
// options and caps. An attachment that cannot be read is named with the
// reason, not dropped silently. Transfer encodings (base64,
// quoted-printable) and charsets (RFC 2047 headers, part charsets) are
// decoded. One object stays one document: its attachments' chunks carry
// the attachment's name in their heading path.
const EmailVersion = "email/1"

// Caps: a part read whole (an attachment is handed to its extractor from
// memory), MIME nesting, and parts per message.
const (
	maxEmailPartBytes = 64 << 20
	maxEmailDepth     = 8
	maxEmailParts     = 256
)

// isEmail reports whether an object is an e-mail message: its content, its
// Content-Type or its .eml extension says so.
func isEmail(sniffed interface{ Is(string) bool }, key, contentType string) bool {
	ct, _, _ := mime.ParseMediaType(contentType)
	return sniffed.Is("message/rfc822") || ct == "message/rfc822" || strings.EqualFold(path.Ext(key), ".eml")
}

// openEmail parses the message's headers now (a message without them is
// not one) and writes its text from a goroutine.
func (o Options) openEmail(br io.Reader, log *sectionLog) (io.Reader, io.Closer, error) {
	msg, err := mail.ReadMessage(bufio.NewReader(br))
	if err != nil {
		return nil, nil, &Skip{ReasonCorrupt, "not an e-mail message: " + err.Error()}
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		e := &emailText{o: o, ctx: ctx, w: newDocWriter(pw, log)}
		err := e.message(msg.Header, msg.Body, 0)
		if err == nil {
			err = e.w.Flush()
		}
		pw.CloseWithError(err)
	}()
	return pr, closerFunc(func() error { cancel(); return pr.Close() }), nil
}

// emailText writes one message's text.
type emailText struct {
	o     Options
	ctx   context.Context
	w     *docWriter
	parts int
	body  bool // a body part was written (later text parts are alternatives or attachments)
	level int  // messages nested (a forwarded message's attachments are under it)
}

var headerDecoder = &mime.WordDecoder{CharsetReader: charset.NewReaderLabel}

// message writes a message's headers and its content.
func (e *emailText) message(h mail.Header, body io.Reader, depth int) error {
	e.level++
	defer func() { e.level-- }()
	subject := decodeHeader(h.Get("Subject"))
	e.w.log.atHeading(e.w.offset(), e.level, cmp.Or(subject, "(no subject)"))
	for _, name := range []string{"From", "To", "Cc", "Date", "Subject"} {
		if v := decodeHeader(h.Get(name)); v != "" {
			e.w.WriteString(name + ": " + v + "\n")
		}
	}
	e.w.WriteString("\n")
	outer := e.body
	defer func() { e.body = outer }()
	e.body = false
	return e.part(map[string][]string(h), body, depth)
}

// part writes one MIME part: multiparts part by part, the first text part
// as the body, everything else as an attachment.
func (e *emailText) part(h map[string][]string, body io.Reader, depth int) error {
	if e.parts++; e.parts > maxEmailParts || depth > maxEmailDepth {
		return &Skip{ReasonTooLarge, fmt.Sprintf("an e-mail of more than %d parts or %d levels of nesting", maxEmailParts, maxEmailDepth)}
	}
	if err := e.ctx.Err(); err != nil {
		return err
	}
	ct, params, err := mime.ParseMediaType(first(h, "Content-Type"))
	if err != nil {
		ct, params = "text/plain", map[string]string{}
	}
	disposition, dparams, _ := mime.ParseMediaType(first(h, "Content-Disposition"))
	name := decodeHeader(cmp.Or(dparams["filename"], params["name"]))
	if strings.HasPrefix(ct, "multipart/") {
		return e.multipart(body, params["boundary"], ct == "multipart/alternative", depth)
	}
	decoded := transferDecoder(body, first(h, "Content-Transfer-Encoding"))
	if !e.body && disposition != "attachment" && (ct == "text/plain" || ct == "text/html") {
		e.body = true
		return e.text(decoded, ct, params["charset"])
	}
	return e.attachment(decoded, cmp.Or(name, ct), ct, depth)
}

// multipart writes a multipart's parts; of an alternative, only one.
func (e *emailText) multipart(body io.Reader, boundary string, alternative bool, depth int) error {
	if boundary == "" {
		return &Skip{ReasonCorrupt, "a multipart without a boundary"}
	}
	mr := multipart.NewReader(body, boundary)
	if alternative {
		return e.alternative(mr, depth)
	}
	for {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &Skip{ReasonCorrupt, "e-mail MIME structure: " + err.Error()}
		}
		if err := e.part(p.Header, p, depth+1); err != nil {
			return err
		}
	}
}

// alternative writes one of the versions of the same content a
// multipart/alternative holds: the text/plain one, else the HTML one, else
// the first (the parts are held, each within the part cap, to choose).
func (e *emailText) alternative(mr *multipart.Reader, depth int) error {
	type held struct {
		h    map[string][]string
		data []byte
	}
	var parts []held
	for {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return &Skip{ReasonCorrupt, "e-mail MIME structure: " + err.Error()}
		}
		data, err := io.ReadAll(io.LimitReader(p, maxEmailPartBytes))
		if err != nil {
			return &Skip{ReasonCorrupt, "e-mail part: " + err.Error()}
		}
		parts = append(parts, held{p.Header, data})
	}
	if len(parts) == 0 {
		return nil
	}
	pick := parts[0]
	for _, want := range []string{"text/html", "text/plain"} {
		for _, p := range parts {
			if ct, _, _ := mime.ParseMediaType(first(p.h, "Content-Type")); ct == want {
				pick = p
				break
			}
		}
	}
	return e.part(pick.h, bytes.NewReader(pick.data), depth+1)
}

// text writes a body part in its charset; HTML through the HTML extractor.
func (e *emailText) text(r io.Reader, ct, cs string) error {
	dec, err := charset.NewReaderLabel(cmp.Or(cs, "utf-8"), r)
	if err != nil {
		dec = r // an unknown charset: read as UTF-8, invalid bytes replaced downstream
	}
	if ct == "text/html" {
		dec = newHTMLText(dec, e.o.Structured, nil, 0)
	}
	_, err = io.Copy(e.w, io.LimitReader(dec, maxEmailPartBytes))
	e.w.WriteString("\n")
	return err
}

// attachment writes an attachment as a section of its own, read by the
// extractor its content calls for; one that cannot be read is named with
// why.
func (e *emailText) attachment(r io.Reader, name, ct string, depth int) error {
	data, err := io.ReadAll(io.LimitReader(r, maxEmailPartBytes+1))
	if err != nil {
		return &Skip{ReasonCorrupt, fmt.Sprintf("attachment %s: %v", schema.Quote(name), err)}
	}
	if ct == "message/rfc822" && len(data) <= maxEmailPartBytes {
		if msg, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
			e.w.WriteString("\nForwarded message:\n")
			return e.message(msg.Header, msg.Body, depth+1)
		}
	}
	e.w.log.atHeading(e.w.offset(), e.level+1, "Attachment: "+name)
	e.w.WriteString("\nAttachment: " + name + "\n")
	if len(data) > maxEmailPartBytes {
		e.w.WriteString(fmt.Sprintf("(not read: over %d MiB)\n", maxEmailPartBytes>>20))
		return nil
	}
	x, err := e.o.Open(bytes.NewReader(data), name, ct)
	if err == nil {
		err = e.copySections(x)
		x.Close()
	}
	var s *Skip
	if errors.As(err, &s) {
		e.w.WriteString("(not read: " + s.Error() + ")\n")
		return nil
	}
	return err
}

// copySections copies an attachment's text, with its pages.
func (e *emailText) copySections(x *Reader) error {
	base := e.w.offset()
	for {
		part, err := x.Next(partBytesEmail)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, s := range x.Sections() {
			if s.Page > 0 {
				e.w.log.atPage(base+s.Offset, s.Page)
			}
		}
		if _, err := e.w.WriteString(part); err != nil {
			return err
		}
	}
}

const partBytesEmail = 256 << 10

// transferDecoder undoes a part's Content-Transfer-Encoding.
func transferDecoder(r io.Reader, enc string) io.Reader {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &base64Lines{r: r})
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return r
}

// base64Lines drops the line breaks and spaces between base64 lines (the
// standard decoder skips only \r and \n).
type base64Lines struct{ r io.Reader }

func (b *base64Lines) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c != ' ' && c != '\t' {
			p[j] = c
			j++
		}
	}
	return j, err
}

func decodeHeader(v string) string {
	if d, err := headerDecoder.DecodeHeader(v); err == nil {
		return strings.TrimSpace(d)
	}
	return strings.TrimSpace(v)
}

func first(h map[string][]string, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
