// Package awstest has httptest stand-ins for STS and S3 that speak the real
// wire formats (STS query protocol with XML answers, S3 REST/XML, SigV4
// Authorization headers) and enforce what real AWS enforces and emulators do
// not: a role's trust policy (principal and sts:ExternalId condition),
// MaxSessionDuration, the role's permissions, the session policy, expiry of
// issued credentials, and errors AWS answers that are hard to provoke on
// purpose (Throttling, RegionDisabledException, ExpiredToken).
package awstest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Role is a customer role as IAM holds it.
type Role struct {
	ARN string
	// Principal may assume the role (the trust policy's Principal).
	Principal string
	// ExternalID is the trust policy's sts:ExternalId condition; "" means the
	// trust policy has none (unsafe: anyone the principal acts for gets in).
	ExternalID string
	// ExternalIDLike, when set, is a StringLike sts:ExternalId condition
	// ("*" matches any run) instead of ExternalID: an unsafe pattern.
	ExternalIDLike string
	// MaxSessionDuration; default one hour.
	MaxSessionDuration time.Duration
	// Buckets the permissions policy allows reading.
	Buckets []string
	// KMSDenied: objects are KMS-encrypted and the role may not decrypt them.
	KMSDenied bool
}

func (r *Role) account() string { return strings.Split(r.ARN, ":")[4] }

// Session is one set of credentials the STS issued.
type Session struct {
	Role            *Role
	AccessKeyID     string
	SecretAccessKey string
	Token           string
	Policy          string
	Name            string
	Expires         time.Time
}

// STS is the fake STS.
type STS struct {
	*httptest.Server
	mu       sync.Mutex
	roles    map[string]*Role
	callers  map[string]string // our access key ID → our principal ARN
	sessions map[string]*Session

	// Throttle answers Throttling to the next n AssumeRole calls.
	Throttle atomic.Int64
	// RegionDisabled answers RegionDisabledException to every AssumeRole.
	RegionDisabled atomic.Bool
	// ExpiredCaller answers ExpiredToken: our own credentials expired.
	ExpiredCaller atomic.Bool
	// CredentialTTL overrides the lifetime of issued credentials (to test
	// refresh before expiry); 0 means the requested duration.
	CredentialTTL time.Duration

	// AssumeLatency delays every AssumeRole answer (nanoseconds; the
	// simulation's realistic STS, e.g. 50 ms).
	AssumeLatency atomic.Int64

	assumes atomic.Int64
}

// NewSTS starts a fake STS; callers maps our own access key IDs to the
// principal ARN they authenticate as.
func NewSTS(t testing.TB, callers map[string]string) *STS {
	s := &STS{roles: map[string]*Role{}, callers: callers, sessions: map[string]*Session{}}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

// SetRole creates or replaces a role (the customer editing IAM).
func (s *STS) SetRole(r Role) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.MaxSessionDuration == 0 {
		r.MaxSessionDuration = time.Hour
	}
	s.roles[r.ARN] = &r
}

// AssumeCalls is the number of AssumeRole requests received.
func (s *STS) AssumeCalls() int64 { return s.assumes.Load() }

// Sessions returns every session issued so far.
func (s *STS) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		out = append(out, *ss)
	}
	return out
}

func (s *STS) session(accessKeyID string) (*Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[accessKeyID]
	return ss, ok
}

var credRE = regexp.MustCompile(`Credential=([A-Z0-9]+)/`)

// accessKeyID reads the access key ID from a SigV4 Authorization header.
func accessKeyID(r *http.Request) string {
	m := credRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return ""
	}
	return m[1]
}

func randID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return prefix + strings.ToUpper(hex.EncodeToString(b))
}

func (s *STS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		stsError(w, 400, "Sender", "MalformedInput", err.Error())
		return
	}
	caller, ok := s.callers[accessKeyID(r)]
	if !ok {
		stsError(w, 403, "Sender", "InvalidClientTokenId", "The security token included in the request is invalid.")
		return
	}
	if s.ExpiredCaller.Load() {
		stsError(w, 403, "Sender", "ExpiredToken", "The security token included in the request is expired")
		return
	}
	switch r.Form.Get("Action") {
	case "GetCallerIdentity":
		acct := strings.Split(caller, ":")[4]
		fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>%s</Arn><UserId>AIDAEXAMPLE</UserId><Account>%s</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
			caller, acct, randID("", 8))
	case "AssumeRole":
		s.assumeRole(w, r, caller)
	default:
		stsError(w, 400, "Sender", "InvalidAction", "Could not find operation "+r.Form.Get("Action"))
	}
}

func (s *STS) assumeRole(w http.ResponseWriter, r *http.Request, caller string) {
	s.assumes.Add(1)
	time.Sleep(time.Duration(s.AssumeLatency.Load()))
	if s.Throttle.Load() > 0 && s.Throttle.Add(-1) >= 0 {
		stsError(w, 400, "Sender", "Throttling", "Rate exceeded")
		return
	}
	if s.RegionDisabled.Load() {
		stsError(w, 403, "Sender", "RegionDisabledException", "STS is not activated in this region for account. Your account administrator can activate STS in this region using the IAM Console.")
		return
	}
	f := r.Form
	arn, name := f.Get("RoleArn"), f.Get("RoleSessionName")
	s.mu.Lock()
	role := s.roles[arn]
	s.mu.Unlock()
	denied := fmt.Sprintf("User: %s is not authorized to perform: sts:AssumeRole on resource: %s", caller, arn)
	// AWS says the same thing for a missing role, a wrong principal and a
	// wrong or missing ExternalId.
	if role == nil || role.Principal != caller || (role.ExternalID != "" && f.Get("ExternalId") != role.ExternalID) ||
		(role.ExternalIDLike != "" && !like(role.ExternalIDLike, f.Get("ExternalId"))) {
		stsError(w, 403, "Sender", "AccessDenied", denied)
		return
	}
	if !regexp.MustCompile(`^[\w+=,.@-]{2,64}$`).MatchString(name) {
		stsError(w, 400, "Sender", "ValidationError", "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint")
		return
	}
	if len(f.Get("Policy")) > 2048 {
		stsError(w, 400, "Sender", "PackedPolicyTooLarge", "Packed policy consumes more than the allowed limit")
		return
	}
	d := time.Hour
	if v := f.Get("DurationSeconds"); v != "" {
		n, _ := strconv.Atoi(v)
		d = time.Duration(n) * time.Second
	}
	if d > role.MaxSessionDuration {
		stsError(w, 400, "Sender", "ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
		return
	}
	if s.CredentialTTL > 0 {
		d = s.CredentialTTL
	}
	ss := &Session{Role: role, AccessKeyID: randID("ASIA", 8), SecretAccessKey: randID("sk", 20), Token: randID("tok", 32),
		Policy: f.Get("Policy"), Name: name, Expires: time.Now().Add(d).UTC()}
	s.mu.Lock()
	s.sessions[ss.AccessKeyID] = ss
	s.mu.Unlock()
	roleName := arn[strings.LastIndex(arn, "/")+1:]
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><AssumedRoleUser><AssumedRoleId>AROA%s:%s</AssumedRoleId><Arn>arn:aws:sts::%s:assumed-role/%s/%s</Arn></AssumedRoleUser><Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken><Expiration>%s</Expiration></Credentials><PackedPolicySize>6</PackedPolicySize></AssumeRoleResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></AssumeRoleResponse>`,
		randID("", 6), name, role.account(), roleName, name, ss.AccessKeyID, ss.SecretAccessKey, ss.Token, ss.Expires.Format(time.RFC3339), randID("", 8))
}

func stsError(w http.ResponseWriter, status int, typ, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(msg))
	fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
		typ, code, b.String(), randID("", 8))
}

// like is IAM's StringLike with "*" only.
func like(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return s == pattern
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}
