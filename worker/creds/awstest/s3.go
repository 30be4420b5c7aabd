package awstest

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// S3 is the fake S3 (path-style addressing): ListObjectsV2 with pagination
// and GetObject. Every request must be signed by a session the STS issued
// (unexpired, its role allowed the bucket, its session policy allowed the
// resource) or by a registered static key, and must name the right
// ExpectedBucketOwner when it names one.
type S3 struct {
	*httptest.Server
	sts *STS
	mu  sync.Mutex
	// objects: bucket → key → body
	objects map[string]map[string]string
	sorted  map[string][]string // bucket → its keys in order, made by a list, dropped by a change
	owner   string
	static  map[string][]string // static access key ID → buckets it may read
	secrets map[string]string   // static access key ID → secret, when signatures are checked

	gone map[string]bool // bucket/key listed but answering NoSuchKey
	// meta, tags and modified: bucket/key → user metadata, tags, last write
	meta, tags map[string]map[string]string
	modified   map[string]time.Time

	// ExpireNext answers ExpiredToken to the next n requests (a session
	// that expired while a download was under way).
	ExpireNext atomic.Int64

	// Gets counts GetObject of documents, SidecarGets of sidecars
	// (schema.SidecarSuffix), Taggings GetObjectTagging.
	Gets, SidecarGets, Taggings, Heads, Lists, Denied atomic.Int64

	// DenyTagging answers AccessDenied to GetObjectTagging (a role
	// without s3:GetObjectTagging).
	DenyTagging atomic.Bool

	// FailHeads and FailLists make every HeadObject or ListObjectsV2
	// answer 503 SlowDown (an S3 in trouble) while set.
	FailHeads, FailLists atomic.Bool

	// GetLatency delays every GetObject answer (nanoseconds; the
	// simulation's realistic S3, e.g. 30 ms).
	GetLatency atomic.Int64
	// ListLatency delays every ListObjectsV2 answer (nanoseconds), as
	// GetLatency does GetObject's.
	ListLatency atomic.Int64
}

// NewS3 starts a fake S3 whose buckets belong to account owner.
func NewS3(t testing.TB, sts *STS, owner string) *S3 {
	s := &S3{sts: sts, owner: owner, objects: map[string]map[string]string{}, sorted: map[string][]string{}, gone: map[string]bool{}, meta: map[string]map[string]string{}, tags: map[string]map[string]string{}, modified: map[string]time.Time{}, static: map[string][]string{}, secrets: map[string]string{}}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

// Put stores an object.
func (s *S3) Put(bucket, key, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects[bucket] == nil {
		s.objects[bucket] = map[string]string{}
	}
	if _, ok := s.objects[bucket][key]; !ok {
		delete(s.sorted, bucket)
	}
	s.objects[bucket][key] = body
	delete(s.gone, bucket+"/"+key)
	delete(s.meta, bucket+"/"+key)
	delete(s.tags, bucket+"/"+key)
	s.modified[bucket+"/"+key] = time.Now().UTC().Truncate(time.Second)
}

// PutTags replaces an object's tags, as PutObjectTagging does: its ETag and
// last-modified time stay.
func (s *S3) PutTags(bucket, key string, tags map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tags[bucket+"/"+key] = tags
}

// Touch sets an object's last-modified time, as a copy in place does.
func (s *S3) Touch(bucket, key string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.modified[bucket+"/"+key] = at.UTC().Truncate(time.Second)
}

// PutMeta stores an object with user metadata (x-amz-meta-<name>).
func (s *S3) PutMeta(bucket, key, body string, meta map[string]string) {
	s.Put(bucket, key, body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.meta[bucket+"/"+key] = meta
}

// Delete removes an object, as DeleteObject does.
func (s *S3) Delete(bucket, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objects[bucket], key)
	delete(s.sorted, bucket)
}

// CreateBucket creates an empty bucket.
func (s *S3) CreateBucket(bucket string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects[bucket] == nil {
		s.objects[bucket] = map[string]string{}
	}
}

// Gone makes an object answer NoSuchKey to GET while it is still listed
// (deleted between listing and fetching).
func (s *S3) Gone(bucket, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gone[bucket+"/"+key] = true
}

// AllowStatic registers an IAM user's access key that may read buckets.
func (s *S3) AllowStatic(accessKeyID string, buckets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.static[accessKeyID] = buckets
}

// AllowStaticSecret is AllowStatic with the key's secret: requests are then
// checked as AWS does, by their SigV4 signature (SignatureDoesNotMatch when
// they were signed with another secret).
func (s *S3) AllowStaticSecret(accessKeyID, secret string, buckets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.static[accessKeyID] = buckets
	s.secrets[accessKeyID] = secret
}

var sigRE = regexp.MustCompile(`Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)`)

// signatureMatches re-signs r with secret, signing exactly the headers r
// says it signed, and compares the signatures.
func signatureMatches(r *http.Request, secret string) bool {
	m := sigRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return false
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return false
	}
	c := r.Clone(context.Background())
	c.Header = http.Header{}
	for _, h := range strings.Split(m[5], ";") {
		if h != "host" {
			c.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	c.Header.Del("Authorization")
	c.URL.Host, c.Host = r.Host, r.Host
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err := signer.SignHTTP(context.Background(), aws.Credentials{AccessKeyID: m[1], SecretAccessKey: secret}, c,
		r.Header.Get("X-Amz-Content-Sha256"), m[4], m[3], at); err != nil {
		return false
	}
	again := sigRE.FindStringSubmatch(c.Header.Get("Authorization"))
	return again != nil && again[6] == m[6]
}

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId></Error>`, code, msg, randID("", 8))
}

func (s *S3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		s.Heads.Add(1) // every HEAD, whatever its answer
	}
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if r.Method == http.MethodHead && s.FailHeads.Load() || key == "" && r.Method == http.MethodGet && s.FailLists.Load() {
		s3Error(w, 503, "SlowDown", "Please reduce your request rate.")
		return
	}
	resource := "arn:aws:s3:::" + bucket
	if key != "" {
		resource += "/" + key
	}
	if s.refuse(w, r, bucket, resource) {
		return
	}
	s.mu.Lock()
	objs, ok := s.objects[bucket]
	body, found := objs[key]
	found = found && !s.gone[bucket+"/"+key]
	meta, modified := s.meta[bucket+"/"+key], s.modified[bucket+"/"+key]
	s.mu.Unlock()
	if !ok {
		s3Error(w, 404, "NoSuchBucket", "The specified bucket does not exist")
		return
	}
	if key == "" {
		s.list(w, r, bucket)
		return
	}
	sidecar := r.Method == http.MethodGet && strings.HasSuffix(key, ".metadata.json")
	if sidecar {
		s.SidecarGets.Add(1) // found or not
	}
	if !found {
		s3Error(w, 404, "NoSuchKey", "The specified key does not exist.")
		return
	}
	if _, ok := r.URL.Query()["tagging"]; ok {
		s.tagging(w, bucket+"/"+key)
		return
	}
	if r.Method != http.MethodHead && !sidecar {
		s.Gets.Add(1)
		time.Sleep(time.Duration(s.GetLatency.Load()))
	}
	w.Header().Set("ETag", etag(body))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Last-Modified", modified.Format(http.TimeFormat))
	for k, v := range meta {
		w.Header().Set("X-Amz-Meta-"+k, v)
	}
	_, _ = w.Write([]byte(body))
}

// refuse answers the error of a request that may not touch resource, and
// reports whether it did.
func (s *S3) refuse(w http.ResponseWriter, r *http.Request, bucket, resource string) bool {
	if code, msg := s.authorize(r, bucket, resource); code != "" {
		s.Denied.Add(1)
		status := 403
		if code == "ExpiredToken" {
			status = 400
		}
		s3Error(w, status, code, msg)
		return true
	}
	if o := r.Header.Get("X-Amz-Expected-Bucket-Owner"); o != "" && o != s.owner {
		s.Denied.Add(1)
		s3Error(w, 403, "AccessDenied", "Access Denied")
		return true
	}
	return false
}

// tagging answers GetObjectTagging of object (bucket/key).
func (s *S3) tagging(w http.ResponseWriter, object string) {
	s.Taggings.Add(1)
	if s.DenyTagging.Load() {
		s3Error(w, 403, "AccessDenied", "Access Denied")
		return
	}
	s.mu.Lock()
	tags := s.tags[object]
	s.mu.Unlock()
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>`)
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		b.WriteString("<Tag><Key>")
		_ = xml.EscapeText(&b, []byte(k))
		b.WriteString("</Key><Value>")
		_ = xml.EscapeText(&b, []byte(tags[k]))
		b.WriteString("</Value></Tag>")
	}
	b.WriteString("</TagSet></Tagging>")
	w.Header().Set("Content-Type", "application/xml")
	_, _ = w.Write([]byte(b.String()))
}

// authorize returns an S3 error code when the request may not touch resource.
func (s *S3) authorize(r *http.Request, bucket, resource string) (code, msg string) {
	id := accessKeyID(r)
	s.mu.Lock()
	staticBuckets, static := s.static[id]
	s.mu.Unlock()
	if static {
		s.mu.Lock()
		secret, checked := s.secrets[id]
		s.mu.Unlock()
		if checked && !signatureMatches(r, secret) {
			return "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method."
		}
		for _, b := range staticBuckets {
			if b == bucket {
				return "", ""
			}
		}
		return "AccessDenied", "Access Denied"
	}
	ss, ok := s.sts.session(id)
	if !ok {
		return "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
	}
	if r.Header.Get("X-Amz-Security-Token") != ss.Token {
		return "InvalidToken", "The provided token is malformed or otherwise invalid."
	}
	if time.Now().After(ss.Expires) || (s.ExpireNext.Load() > 0 && s.ExpireNext.Add(-1) >= 0) {
		return "ExpiredToken", "The provided token has expired."
	}
	allowed := false
	for _, b := range ss.Role.Buckets {
		allowed = allowed || b == bucket
	}
	if !allowed || !policyAllows(ss.Policy, resource) {
		return "AccessDenied", "Access Denied"
	}
	if ss.Role.KMSDenied && resource != "arn:aws:s3:::"+bucket {
		return "AccessDenied", "User is not authorized to perform: kms:Decrypt on the resource associated with this ciphertext because no identity-based policy allows the kms:Decrypt action"
	}
	return "", ""
}

// policyAllows evaluates the Allow statements' Resource patterns of a
// session policy ("*" as a trailing wildcard); no policy allows everything
// the role allows.
func policyAllows(policy, resource string) bool {
	if policy == "" {
		return true
	}
	var doc struct {
		Statement []struct {
			Effect   string
			Resource []string
		}
	}
	if json.Unmarshal([]byte(policy), &doc) != nil {
		return false
	}
	for _, st := range doc.Statement {
		for _, p := range st.Resource {
			if st.Effect == "Allow" && IAMMatch(p, resource) {
				return true
			}
		}
	}
	return false
}

// IAMMatch matches s against an IAM Resource pattern as AWS does: "*" any
// run, "?" any one character, and the escapes ${*}, ${?} and ${$} for those
// characters themselves.
func IAMMatch(pattern, s string) bool {
	type tok struct {
		lit  rune
		kind byte // 'l' literal, '*' any run, '?' any one
	}
	var toks []tok
	for i := 0; i < len(pattern); {
		switch {
		case strings.HasPrefix(pattern[i:], "${*}"), strings.HasPrefix(pattern[i:], "${?}"), strings.HasPrefix(pattern[i:], "${$}"):
			toks = append(toks, tok{rune(pattern[i+2]), 'l'})
			i += 4
		case pattern[i] == '*' || pattern[i] == '?':
			toks = append(toks, tok{0, pattern[i]})
			i++
		default:
			toks = append(toks, tok{rune(pattern[i]), 'l'})
			i++
		}
	}
	var match func(t []tok, s string) bool
	match = func(t []tok, s string) bool {
		for len(t) > 0 {
			switch t[0].kind {
			case '*':
				for j := 0; j <= len(s); j++ {
					if match(t[1:], s[j:]) {
						return true
					}
				}
				return false
			case '?':
				if s == "" {
					return false
				}
			default:
				if s == "" || rune(s[0]) != t[0].lit {
					return false
				}
			}
			t, s = t[1:], s[1:]
		}
		return s == ""
	}
	return match(toks, s)
}

func etag(body string) string { return `"` + etagHex(body) + `"` }

// etagHex is the fake's ETag of body without its quotes: 16 hex digits of
// its FNV-1a hash.
func etagHex(body string) string {
	h := fnv.New64a()
	_, _ = io.WriteString(h, body)
	var b [16]byte
	for i, v := 15, h.Sum64(); i >= 0; i, v = i-1, v>>4 {
		b[i] = "0123456789abcdef"[v&15]
	}
	return string(b[:])
}

// list answers ListObjectsV2: the continuation token is the index of the
// page's first key among the prefix's keys in order; without one, the
// listing starts after start-after.
func (s *S3) list(w http.ResponseWriter, r *http.Request, bucket string) {
	s.Lists.Add(1)
	time.Sleep(time.Duration(s.ListLatency.Load()))
	q := r.URL.Query()
	prefix := q.Get("prefix")
	token, startAfter := q.Get("continuation-token"), q.Get("start-after")
	start, _ := strconv.Atoi(token)
	maxKeys, _ := strconv.Atoi(q.Get("max-keys"))
	if maxKeys <= 0 {
		maxKeys = 1000
	}
	// The bucket's keys are sorted once per change (a 100,000-key bucket
	// listed page by page would otherwise be sorted for every page); the
	// prefix's keys are a run of them.
	var page []listed
	s.mu.Lock()
	keys, ok := s.sorted[bucket]
	if !ok {
		keys = slices.Sorted(maps.Keys(s.objects[bucket]))
		s.sorted[bucket] = keys
	}
	from, _ := slices.BinarySearch(keys, prefix)
	n := from + sort.Search(len(keys)-from, func(i int) bool { return !strings.HasPrefix(keys[from+i], prefix) })
	matching := keys[from:n]
	if token == "" && startAfter != "" {
		start, _ = slices.BinarySearch(matching, startAfter)
		if start < len(matching) && matching[start] == startAfter {
			start++
		}
	}
	start = min(max(start, 0), len(matching))
	end := min(start+maxKeys, len(matching))
	for _, k := range matching[start:end] {
		page = append(page, listed{k, s.objects[bucket][k], s.modified[bucket+"/"+k]})
	}
	s.mu.Unlock()
	// Written with appends: the simulations list a million keys with the
	// fake in their own process, where fmt's cost was the planner's.
	b := make([]byte, 0, 512+len(page)*192)
	b = append(b, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><KeyCount>`...)
	b = append(strconv.AppendInt(b, int64(end-start), 10), "</KeyCount><MaxKeys>"...)
	b = append(strconv.AppendInt(b, int64(maxKeys), 10), "</MaxKeys><IsTruncated>"...)
	b = append(strconv.AppendBool(b, end < len(matching)), "</IsTruncated>"...)
	if end < len(matching) {
		b = append(b, "<NextContinuationToken>"...)
		b = append(strconv.AppendInt(b, int64(end), 10), "</NextContinuationToken>"...)
	}
	b = appendContents(b, page, q.Get("encoding-type") == "url")
	b = append(b, "</ListBucketResult>"...)
	w.Header().Set("Content-Type", "application/xml")
	_, _ = w.Write(b)
}

// listed is an object on a listing page.
type listed struct {
	key, body string
	modified  time.Time
}

// appendContents appends page's Contents elements; encode: keys
// URL-encoded (encoding-type=url), as S3 does.
func appendContents(b []byte, page []listed, encode bool) []byte {
	if encode {
		b = append(b, "<EncodingType>url</EncodingType>"...)
	}
	for _, e := range page {
		b = append(b, "<Contents><Key>"...)
		if encode {
			b = append(b, url.QueryEscape(e.key)...)
		} else if plainXML(e.key) {
			b = append(b, e.key...)
		} else {
			var esc bytes.Buffer
			_ = xml.EscapeText(&esc, []byte(e.key))
			b = append(b, esc.Bytes()...)
		}
		b = append(b, "</Key><LastModified>"...)
		b = append(e.modified.AppendFormat(b, "2006-01-02T15:04:05.000Z"), "</LastModified><ETag>"...)
		b = append(append(append(b, "&quot;"...), etagHex(e.body)...), "&quot;</ETag><Size>"...)
		b = append(strconv.AppendInt(b, int64(len(e.body)), 10), "</Size></Contents>"...)
	}
	return b
}

// plainXML reports whether s is XML text as it is: printable ASCII that
// xml.EscapeText leaves alone.
func plainXML(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\'' || c == '&' || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// ETag is the ETag the fake S3 gives an object with body.
func ETag(body string) string { return etag(body) }
