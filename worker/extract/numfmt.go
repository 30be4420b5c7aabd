package extract

import (
	"encoding/xml"
	"math"
	"strconv"
	"strings"
	"time"
)

// A spreadsheet cell holds a number; what a reader sees is that number
// through the cell's number format: a date, a time, a percentage, a fixed
// number of decimals. This file turns an XLSX cell's stored value into its
// displayed text. Dates and times follow their format code; the built-in
// locale formats (14: short date, 22: date and time), which Excel shows
// in the reader's locale, are written in ISO 8601 (2024-10-01), the one
// reading every reader and retriever agrees on. Fractions and scientific
// notation keep the stored value.

// cellFormats are a workbook's number formats: the format code of each cell
// style (xl/styles.xml cellXfs, by index; "" is General) and its date
// system.
type cellFormats struct {
	codes    []string
	date1904 bool
}

// builtinFormats are the format codes of ECMA-376's built-in number format
// IDs (part 1, 18.8.30) that are not General.
var builtinFormats = map[int]string{
	1: "0", 2: "0.00", 3: "#,##0", 4: "#,##0.00", 9: "0%", 10: "0.00%",
	14: "yyyy-mm-dd", 15: "d-mmm-yy", 16: "d-mmm", 17: "mmm-yy", 18: "h:mm AM/PM", 19: "h:mm:ss AM/PM",
	20: "h:mm", 21: "h:mm:ss", 22: "yyyy-mm-dd h:mm", 37: "#,##0 ;(#,##0)", 38: "#,##0 ;(#,##0)",
	39: "#,##0.00;(#,##0.00)", 40: "#,##0.00;(#,##0.00)", 45: "mm:ss", 46: "[h]:mm:ss", 47: "mm:ss.0",
}

// parseStyles reads the number formats of xl/styles.xml.
func parseStyles(data []byte) []string {
	var st struct {
		NumFmts []struct {
			ID   int    `xml:"numFmtId,attr"`
			Code string `xml:"formatCode,attr"`
		} `xml:"numFmts>numFmt"`
		Xfs []struct {
			ID int `xml:"numFmtId,attr"`
		} `xml:"cellXfs>xf"`
	}
	if xml.Unmarshal(data, &st) != nil {
		return nil
	}
	custom := map[int]string{}
	for _, f := range st.NumFmts {
		custom[f.ID] = f.Code
	}
	codes := make([]string, len(st.Xfs))
	for i, xf := range st.Xfs {
		if c, ok := custom[xf.ID]; ok {
			codes[i] = c
		} else {
			codes[i] = builtinFormats[xf.ID]
		}
	}
	return codes
}

// display is the stored numeric value v of a cell of style index style as
// its format shows it (v itself when it is not a number or the format is
// one this does not render).
func (f *cellFormats) display(v string, style int) string {
	x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return v
	}
	code := ""
	if f != nil && style >= 0 && style < len(f.codes) {
		code = f.codes[style]
	}
	code = formatSection(code, x)
	switch {
	case code == "" || strings.EqualFold(code, "General") || code == "@":
		return general(x)
	case isDateFormat(code):
		return formatDate(code, f.serialTime(x), x)
	case strings.ContainsAny(unquoted(code), "E?/"):
		return general(x) // scientific notation and fractions: the value itself
	}
	return formatNumber(code, x)
}

// general is a number as Excel's General format shows it: at most 15
// significant digits, no exponent for ordinary magnitudes.
func general(x float64) string {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 15, 64), 64)
	if a := math.Abs(r); a != 0 && (a >= 1e15 || a < 1e-9) {
		return strconv.FormatFloat(r, 'G', -1, 64)
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// formatSection picks the section of a format code (positive;negative;
// zero;text) that shows x; a negative section shows -x.
func formatSection(code string, x float64) string {
	secs := splitUnquoted(code, ';')
	switch {
	case x < 0 && len(secs) > 1:
		return secs[1]
	case x == 0 && len(secs) > 2:
		return secs[2]
	}
	return secs[0]
}

// splitUnquoted splits code at sep outside quotes, brackets and escapes.
func splitUnquoted(code string, sep byte) []string {
	var out []string
	start, quoted, bracket := 0, false, false
	for i := 0; i < len(code); i++ {
		switch c := code[i]; {
		case c == '\\' && !quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '[' && !quoted:
			bracket = true
		case c == ']' && !quoted:
			bracket = false
		case c == sep && !quoted && !bracket:
			out = append(out, code[start:i])
			start = i + 1
		}
	}
	return append(out, code[start:])
}

// unquoted is code without its quoted literals, escapes and brackets but
// elapsed-time ones ([h], [mm], [ss]).
func unquoted(code string) string {
	var b strings.Builder
	for i := 0; i < len(code); i++ {
		switch c := code[i]; c {
		case '\\', '_', '*':
			i++
		case '"':
			if j := strings.IndexByte(code[i+1:], '"'); j >= 0 {
				i += j + 1
			} else {
				i = len(code)
			}
		case '[':
			j := strings.IndexByte(code[i:], ']')
			if j < 0 {
				return b.String()
			}
			if in := strings.ToLower(code[i+1 : i+j]); strings.Trim(in, "hms") == "" && in != "" {
				b.WriteString(in)
			}
			i += j
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isDateFormat reports whether a format code shows a date or a time.
func isDateFormat(code string) bool {
	plain := strings.ToLower(unquoted(code))
	return strings.ContainsAny(plain, "ydhs") || strings.Contains(plain, "m") && !strings.ContainsAny(plain, "0#?")
}

// serialTime is a date serial number as a time: days since the workbook's
// epoch, the fraction the time of day. In the 1900 system Excel counts the
// 29th of February 1900, which did not exist (a bug kept from Lotus 1-2-3).
func (f *cellFormats) serialTime(x float64) time.Time {
	epoch := time.Date(1899, 12, 30, 0, 0, 0, 0, time.UTC)
	switch {
	case f != nil && f.date1904:
		epoch = time.Date(1904, 1, 1, 0, 0, 0, 0, time.UTC)
	case x < 61:
		epoch = time.Date(1899, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	ms := math.Round(x * 86400 * 1000)
	return epoch.Add(time.Duration(ms) * time.Millisecond)
}

// dateToken is one part of a date format code.
type dateToken struct {
	kind byte   // 'y' 'm' 'd' 'h' 'M' (minutes) 's' 'a' (AM/PM) 'f' (fraction of a second) 'H' (elapsed hours), 0: literal
	n    int    // its letters (mm: 2)
	text string // a literal's text, AM/PM's form
}

// formatDate writes t, date serial x, as the date format code shows it.
func formatDate(code string, t time.Time, x float64) string {
	toks := dateTokens(code)
	ampm := false
	for _, tk := range toks {
		ampm = ampm || tk.kind == 'a'
	}
	var b strings.Builder
	for _, tk := range toks {
		b.WriteString(tk.format(t, ampm, x))
	}
	return b.String()
}

func (tk dateToken) format(t time.Time, ampm bool, x float64) string {
	two := func(v int) string { return pad(v, min(tk.n, 2)) }
	switch tk.kind {
	case 'y':
		if tk.n <= 2 {
			return pad(t.Year()%100, 2)
		}
		return strconv.Itoa(t.Year())
	case 'm':
		switch {
		case tk.n == 3:
			return t.Month().String()[:3]
		case tk.n == 4:
			return t.Month().String()
		case tk.n >= 5:
			return t.Month().String()[:1]
		}
		return two(int(t.Month()))
	case 'd':
		switch {
		case tk.n == 3:
			return t.Weekday().String()[:3]
		case tk.n >= 4:
			return t.Weekday().String()
		}
		return two(t.Day())
	case 'h':
		h := t.Hour()
		if ampm {
			h = (h+11)%12 + 1
		}
		return two(h)
	case 'H':
		return pad(int(math.Round(x*86400)/3600), tk.n)
	case 'M':
		return two(t.Minute())
	case 's':
		return two(t.Second())
	case 'f':
		ms := strconv.Itoa(1000 + t.Nanosecond()/1e6)[1:]
		return "." + ms[:min(tk.n, 3)]
	case 'a':
		am, pm := "AM", "PM"
		if tk.text == "A/P" {
			am, pm = "A", "P"
		}
		if t.Hour() < 12 {
			return am
		}
		return pm
	}
	return tk.text
}

func pad(v, n int) string {
	s := strconv.Itoa(v)
	for len(s) < n {
		s = "0" + s
	}
	return s
}

// dateTokens splits a date format code into its parts; an m is minutes
// after an hour or before a second, else a month.
func dateTokens(code string) []dateToken {
	var toks []dateToken
	lit := func(s string) { toks = append(toks, dateToken{text: s}) }
	for i := 0; i < len(code); {
		c := code[i]
		lc := c | 0x20
		switch {
		case c == '"':
			j := strings.IndexByte(code[i+1:], '"')
			if j < 0 {
				j = len(code) - i - 1
			}
			lit(code[i+1 : i+1+j])
			i += j + 2
		case c == '\\' && i+1 < len(code):
			lit(code[i+1 : i+2])
			i += 2
		case c == '_' || c == '*':
			if c == '_' {
				lit(" ")
			}
			i += 2
		case c == '[':
			var tk *dateToken
			if tk, i = bracket(code, i); tk != nil {
				toks = append(toks, *tk)
			}
		case strings.HasPrefix(strings.ToUpper(code[i:]), "AM/PM"):
			toks = append(toks, dateToken{kind: 'a', text: "AM/PM"})
			i += 5
		case strings.HasPrefix(strings.ToUpper(code[i:]), "A/P"):
			toks = append(toks, dateToken{kind: 'a', text: "A/P"})
			i += 3
		case lc == 'y' || lc == 'm' || lc == 'd' || lc == 'h' || lc == 's' || lc == 'e':
			n := 1
			for i+n < len(code) && code[i+n]|0x20 == lc {
				n++
			}
			if lc == 'e' {
				lc, n = 'y', 4
			}
			toks = append(toks, dateToken{kind: lc, n: n})
			i += n
		case c == '.' && i+1 < len(code) && code[i+1] == '0':
			n := 1
			for i+1+n < len(code) && code[i+1+n] == '0' {
				n++
			}
			toks = append(toks, dateToken{kind: 'f', n: n})
			i += 1 + n
		default:
			lit(code[i : i+1])
			i++
		}
	}
	minutes(toks)
	return toks
}

// bracket reads the bracket at code[i]: an elapsed time ([h], [mm], [ss])
// is a token; colours, conditions and locales are not shown.
func bracket(code string, i int) (*dateToken, int) {
	j := strings.IndexByte(code[i:], ']')
	if j < 0 {
		j = len(code) - i - 1
	}
	next := i + j + 1
	switch in := strings.ToLower(code[i+1 : i+j]); {
	case in == "":
	case strings.Trim(in, "h") == "":
		return &dateToken{kind: 'H', n: len(in)}, next
	case strings.Trim(in, "ms") == "":
		return &dateToken{kind: in[0], n: len(in)}, next
	}
	return nil, next
}

// minutes makes an m that follows an hour or precedes a second minutes.
func minutes(toks []dateToken) {
	last := byte(0)
	for i := range toks {
		switch toks[i].kind {
		case 'h', 'H':
			last = 'h'
		case 'm':
			if last == 'h' && toks[i].n <= 2 {
				toks[i].kind = 'M'
			}
			last = 'm'
		case 's':
			for j := i - 1; j >= 0; j-- {
				if toks[j].kind == 'm' && toks[j].n <= 2 {
					toks[j].kind = 'M'
					break
				}
				if toks[j].kind != 0 {
					break
				}
			}
			last = 's'
		case 'y', 'd':
			last = toks[i].kind
		}
	}
}

// formatNumber writes x as a number format code (one section) shows it:
// its literals, and its placeholders as one number with the code's
// decimals and thousands separators; a percentage is x × 100.
func formatNumber(code string, x float64) string {
	plain := unquoted(code)
	if strings.Contains(plain, "%") {
		x *= 100
	}
	start := strings.IndexAny(code, "0#")
	if start < 0 {
		return general(x)
	}
	end := start
	for end < len(code) && strings.IndexByte("0#,.", code[end]) >= 0 {
		end++
	}
	digits := code[start:end]
	decimals := 0
	if dot := strings.IndexByte(digits, '.'); dot >= 0 {
		decimals = strings.Count(digits[dot:], "0") + strings.Count(digits[dot:], "#")
	}
	// Excel rounds half away from zero (0.925 at 0% is 93%).
	pow := math.Pow10(decimals)
	num := strconv.FormatFloat(math.Round(math.Abs(x)*pow*(1+1e-15))/pow, 'f', decimals, 64)
	if strings.Contains(digits, ",") {
		num = group(num)
	}
	sign := ""
	if x < 0 && !strings.ContainsAny(code, "(-") {
		sign = "-"
	}
	return sign + literal(code[:start]) + num + literal(code[end:])
}

// literal is a format code's literal text: quoted text and escaped
// characters, without brackets, padding or fill.
func literal(s string) string {
	var b strings.Builder
	for _, tk := range dateTokens(s) {
		if tk.kind == 0 {
			b.WriteString(tk.text)
		}
	}
	return b.String()
}

// group puts thousands separators into a formatted number.
func group(num string) string {
	intPart, frac, _ := strings.Cut(num, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	return b.String()
}
