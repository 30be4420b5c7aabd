package creds

import (
	"encoding/xml"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// s3Page is a ListObjectsV2 page as S3 writes it (n objects).
func s3Page(n int) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>tenant-bucket</Name><Prefix>big/</Prefix><KeyCount>1000</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>`)
	for i := range n {
		fmt.Fprintf(&b, "<Contents><Key>big/obj-%07d%%20%%26.txt</Key><LastModified>2026-12-07T13:51:03.000Z</LastModified><ETag>&quot;9dd4e461268c8034f5c8564e155c67a6&quot;</ETag><ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType><Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>", i, i)
	}
	b.WriteString("</ListBucketResult>")
	return b.String()
}

// listDocs are documents scanList reads itself (plain: true) or leaves to
// encoding/xml.
var listDocs = []struct {
	name  string
	doc   string
	plain bool
}{
	{"S3's page", s3Page(3), true},
	{"MinIO's page", `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><Delimiter></Delimiter><IsTruncated>false</IsTruncated><Contents><Key>a&amp;b &lt;c&gt; 'd'.txt</Key><LastModified>2026-12-07T10:00:00.000Z</LastModified><ETag>&#34;0cc175b9c0f1b6a831c399e269772661&#34;</ETag><Size>1</Size><Owner><ID>02d6176db174dc93cb1b899f7c6078f08654445fe8cf1b6ce98d8855f66bdbf4</ID><DisplayName>minio</DisplayName></Owner><StorageClass>STANDARD</StorageClass></Contents></ListBucketResult>`, false},
	{"empty listing", `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>`, true},
	{"no declaration, white space, empty elements", "\n<ListBucketResult>\n  <IsTruncated/>\n  <Contents/>\n  <Contents>\n    <Key>k</Key>\n    <Size> 7 </Size>\n  </Contents>\n</ListBucketResult>\n", true},
	{"multi-byte keys", `<ListBucketResult><Contents><Key>日本/ファイル €.txt</Key><Size>1</Size></Contents></ListBucketResult>`, true},
	{"a comment", `<ListBucketResult><!-- hi --><Contents><Key>k</Key></Contents></ListBucketResult>`, false},
	{"CDATA", `<ListBucketResult><Contents><Key><![CDATA[a<b]]></Key></Contents></ListBucketResult>`, false},
	{"carriage returns", "<ListBucketResult><Contents><Key>a\r\nb</Key></Contents></ListBucketResult>", false},
	{"a namespace prefix", `<s3:ListBucketResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/"><s3:Contents><s3:Key>k</s3:Key></s3:Contents></s3:ListBucketResult>`, false},
	{"a repeated field", `<ListBucketResult><Contents><Key>a</Key><Key>b</Key></Contents></ListBucketResult>`, false},
	{"another encoding", `<?xml version="1.0" encoding="ISO-8859-1"?><ListBucketResult></ListBucketResult>`, false},
	{"an S3 error", `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`, false},
	{"mismatched end tag", `<ListBucketResult><Contents><Key>a</Size></Contents></ListBucketResult>`, false},
	{"not a number", `<ListBucketResult><Contents><Size>ten</Size></Contents></ListBucketResult>`, false},
	{"truncated", `<ListBucketResult><Contents><Key>a</Key>`, false},
	{"a control character", "<ListBucketResult><Contents><Key>a\x01b</Key></Contents></ListBucketResult>", false},
	{"invalid UTF-8", "<ListBucketResult><Contents><Key>a\xffb</Key></Contents></ListBucketResult>", false},
	{"deep nesting", "<ListBucketResult>" + strings.Repeat("<x>", 40) + strings.Repeat("</x>", 40) + "</ListBucketResult>", false},
}

// TestListDocMatchesEncodingXML: on every document the decoder's answer is
// encoding/xml's, error or value, and the plain ones never reach
// encoding/xml.
func TestListDocMatchesEncodingXML(t *testing.T) {
	for _, c := range listDocs {
		t.Run(c.name, func(t *testing.T) {
			if _, ok := scanList([]byte(c.doc)); ok != c.plain {
				t.Errorf("scanList read it: %v, want %v", ok, c.plain)
			}
			sameAsEncodingXML(t, []byte(c.doc))
		})
	}
	doc, err := decodeListDoc([]byte(s3Page(3)))
	if err != nil {
		t.Fatal(err)
	}
	want := listEntry{Key: "big/obj-0000002%20%26.txt", ETag: `"9dd4e461268c8034f5c8564e155c67a6"`, LastModified: "2026-12-07T13:51:03.000Z", Size: 2}
	if !doc.IsTruncated || doc.NextContinuationToken != "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=" || doc.EncodingType != "url" || len(doc.Contents) != 3 || doc.Contents[2] != want {
		t.Fatalf("decoded %+v", doc)
	}
}

// sameAsEncodingXML fails t unless decodeListDoc(body) answers as
// encoding/xml does, and scanList, where it reads body, agrees.
func sameAsEncodingXML(t *testing.T, body []byte) {
	t.Helper()
	var want listDoc
	wantErr := xml.Unmarshal(body, &want)
	want.XMLName = xml.Name{}
	if fast, ok := scanList(body); ok && (wantErr != nil || !reflect.DeepEqual(*fast, want)) {
		t.Fatalf("scanList read %q as %+v; encoding/xml: %+v, %v", body, *fast, want, wantErr)
	}
	got, err := decodeListDoc(body)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decodeListDoc(%q): error %v; encoding/xml: %v", body, err, wantErr)
	}
	if err == nil {
		got.XMLName = xml.Name{}
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("decodeListDoc(%q) = %+v; encoding/xml: %+v", body, *got, want)
		}
	}
}

// FuzzListDoc holds the decoder to encoding/xml on any input.
func FuzzListDoc(f *testing.F) {
	for _, c := range listDocs {
		f.Add([]byte(c.doc))
	}
	f.Fuzz(func(t *testing.T, body []byte) { sameAsEncodingXML(t, body) })
}

// BenchmarkListDoc reads a page of 1,000 keys: scanList against
// encoding/xml (which the SDK's deserializer is built on).
func BenchmarkListDoc(b *testing.B) {
	page := []byte(s3Page(1000))
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			if _, ok := scanList(page); !ok {
				b.Fatal("not read")
			}
		}
	})
	b.Run("encoding-xml", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		for b.Loop() {
			var doc listDoc
			if err := xml.Unmarshal(page, &doc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
