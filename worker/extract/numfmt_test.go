package extract

import "testing"

// Stored values through their number formats, as a reader sees them.
func TestCellDisplay(t *testing.T) {
	f := &cellFormats{codes: []string{"", "yyyy-mm-dd", "0%", "0.00%", "#,##0.00", "d-mmm-yy", "h:mm AM/PM", "yyyy-mm-dd h:mm",
		`dd/mm/yyyy\ hh:mm:ss`, "[h]:mm:ss", `"$"#,##0.00_);\("$"#,##0.00\)`, "mmmm d, yyyy", "@", "0.00E+00", `0.0 "kg"`, "mm:ss.0", "[$-409]mmmm yy;@",
		`[Red]#,##0`, "dddd"}}
	tests := []struct {
		v     string
		style int
		want  string
	}{
		{"45566", 0, "45566"},
		{"0.30000000000000004", 0, "0.3"},
		{"45566", 1, "2024-10-01"},
		{"0.256", 2, "26%"},
		{"0.256", 3, "25.60%"},
		{"1234567.891", 4, "1,234,567.89"},
		{"45566", 5, "1-Oct-24"},
		{"0.75", 6, "6:00 PM"},
		{"45566.5", 7, "2024-10-01 12:00"},
		{"45566.75", 8, "01/10/2024 18:00:00"},
		{"1.5", 9, "36:00:00"},
		{"-1234.5", 10, "($1,234.50)"},
		{"1234.5", 10, "$1,234.50 "},
		{"45566", 11, "October 1, 2024"},
		{"42", 12, "42"},
		{"12345", 13, "12345"},
		{"12.345", 14, "12.3 kg"},
		{"0.000694444", 15, "01:00.0"},
		{"45566", 16, "October 24"},
		{"-1234", 17, "-1,234"},
		{"45566", 18, "Tuesday"},
		{"59", 1, "1900-02-28"},
		{"61", 1, "1900-03-01"},
		{"not a number", 1, "not a number"},
		{"45566", 99, "45566"},
	}
	for _, tt := range tests {
		if got := f.display(tt.v, tt.style); got != tt.want {
			t.Errorf("%s as %q: %q, want %q", tt.v, f.codes[min(tt.style, len(f.codes)-1)], got, tt.want)
		}
	}
	// The 1904 date system (Excel for Mac before 2011): day 0 is 1904-01-01.
	mac := &cellFormats{codes: []string{"yyyy-mm-dd"}, date1904: true}
	if got := mac.display("44104", 0); got != "2024-10-01" {
		t.Errorf("1904: %s", got)
	}
}
