package extract

import (
	"strings"
	"testing"
)

const page = `<!DOCTYPE html>
<html><head><title>Quarterly report</title>
<style>body { color: red }</style>
<script>var secret = "not text"; document.write("<p>hidden</p>");</script>
</head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<h1>Results   for Q3</h1>
<p>Revenue grew <b>12%</b> in the
third quarter.</p>
<ul><li>North: up</li><li>South: flat</li></ul>
<table><tr><th>Region</th><th>Sales</th></tr><tr><td>North</td><td>120</td></tr></table>
<noscript>Enable JavaScript</noscript>
<!-- a comment -->
<p>Contact&nbsp;us &amp; more.</p>
</body></html>`

// TestHTMLVisibleText: markup, scripts, styles and comments are dropped;
// headings, paragraphs, list items and table rows keep their lines.
func TestHTMLVisibleText(t *testing.T) {
	got, x, skip := read(t, []byte(page), "report.html", "")
	if skip != nil {
		t.Fatal(skip)
	}
	want := "Quarterly report\nHome | About\nResults for Q3\nRevenue grew 12% in the third quarter.\n- North: up\n- South: flat\nRegion | Sales\nNorth | 120\nContact us & more.\n"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	if x.Version() != HTMLVersion || x.Type() != "text/html" {
		t.Fatalf("version %s type %s", x.Version(), x.Type())
	}
	for _, bad := range []string{"secret", "color", "hidden", "comment", "<", "Enable JavaScript"} {
		if strings.Contains(got, bad) {
			t.Fatalf("%q leaked into the text", bad)
		}
	}
}

// TestHTMLCharsetAndDetection: the document's <meta charset> decides the
// encoding; HTML is told by content, Content-Type or extension; a long
// document streams (the same text in small parts).
func TestHTMLCharsetAndDetection(t *testing.T) {
	latin := []byte(`<html><head><meta charset="windows-1252"></head><body><p>Caf` + "\xe9" + ` cr` + "\xe8" + `me br` + "\xfb" + `l` + "\xe9" + `e</p></body></html>`)
	if got, _, skip := read(t, latin, "", ""); skip != nil || got != "Café crème brûlée\n" {
		t.Fatalf("meta charset: %v %q", skip, got)
	}
	frag := []byte("<b>bold</b> and <i>italic</i> text, no html element at all")
	if got, x, _ := read(t, frag, "fragment.txt", "text/html; charset=utf-8"); x.Version() != HTMLVersion || got != "bold and italic text, no html element at all\n" {
		t.Fatalf("by Content-Type: %s %q", x.Version(), got)
	}
	if _, x, _ := read(t, frag, "fragment.htm", ""); x.Version() != HTMLVersion {
		t.Fatalf("by extension: %s", x.Version())
	}
	if _, x, _ := read(t, []byte("if a < b and c > d then <nothing> happens"), "notes.txt", ""); x.Version() != Version {
		t.Fatalf("plain text taken for HTML: %s", x.Version())
	}
	big := "<html><body>" + strings.Repeat("<p>Paragraph with <em>some</em> words.</p>\n", 5000) + "</body></html>"
	got, _, skip := read(t, []byte(big), "", "")
	if skip != nil || got != strings.Repeat("Paragraph with some words.\n", 5000) {
		t.Fatalf("long document: %v, %d bytes", skip, len(got))
	}
}

func FuzzHTMLText(f *testing.F) {
	f.Add([]byte(page))
	f.Add([]byte("<p><script>x</p></script><li>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := OpenObject(strings.NewReader(string(data)), "f.html", "text/html")
		if err != nil {
			return
		}
		for {
			if _, err := x.Next(100); err != nil {
				return
			}
		}
	})
}
