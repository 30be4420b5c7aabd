package creds

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
)

// MaxPolicyChars is AWS's limit on an inline session policy (MinIO: the same).
const MaxPolicyChars = 2048

// SessionPolicy returns the inline session policy that scopes an assumed
// session to one bucket and, when prefix is not empty, to keys under it: the
// credentials themselves cannot read anything else, whatever a bug or a
// forged message asks for. It fails when the policy would exceed
// MaxPolicyChars.
func SessionPolicy(bucket, prefix string) (string, error) {
	key := bucket + "\x00" + prefix
	if p, ok := policies.Get(key); ok {
		return p, nil
	}
	p, err := sessionPolicy(bucket, prefix)
	if err == nil {
		policies.Add(key, p)
	}
	return p, err
}

// policies caches session policies: every task of a job asks for the same
// one, and building it (JSON) was 5 % of a 4 KiB object's CPU.
var policies, _ = lru.New[string, string](4096)

func sessionPolicy(bucket, prefix string) (string, error) {
	type stmt struct {
		Effect    string         `json:"Effect"`
		Action    []string       `json:"Action"`
		Resource  []string       `json:"Resource"`
		Condition map[string]any `json:"Condition,omitempty"`
	}
	bucket, prefix = iamLiteral(bucket), iamLiteral(prefix)
	list := stmt{Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{"arn:aws:s3:::" + bucket}}
	if prefix != "" {
		list.Condition = map[string]any{"StringLike": map[string]any{"s3:prefix": []string{prefix + "*"}}}
	}
	get := stmt{Effect: "Allow", Action: []string{"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"},
		Resource: []string{"arn:aws:s3:::" + bucket + "/" + prefix + "*"}}
	doc := map[string]any{"Version": "2012-10-17", "Statement": []stmt{list, get}}
	b, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	if len(b) > MaxPolicyChars {
		return "", fmt.Errorf("session policy for s3://%s/%s is %d characters, over the %d limit", bucket, prefix, len(b), MaxPolicyChars)
	}
	return string(b), nil
}

// iamLiteral escapes IAM's wildcards and policy variables so that s matches
// only itself in a Resource or a StringLike condition: a key or prefix
// holding "*", "?" or "${…}" would otherwise widen the session beyond the
// job's own scope. IAM's escapes are ${*}, ${?} and ${$}.
func iamLiteral(s string) string { return iamEscaper.Replace(s) }

var iamEscaper = strings.NewReplacer("$", "${$}", "*", "${*}", "?", "${?}")

var sessionChars = regexp.MustCompile(`[^\w+=,.@-]`)

// SessionTemplateDefault is the default RoleSessionName template.
const SessionTemplateDefault = "{prefix}-{org}-{job}"

// SessionName builds a RoleSessionName that is meaningful in the customer's
// CloudTrail: "<prefix>-<org>-<scope>" (scope is a job ID, "events" or
// "verify"); see FormatSessionName.
func SessionName(prefix, org, scope string) string {
	return FormatSessionName(SessionTemplateDefault, prefix, org, scope)
}

// FormatSessionName fills a RoleSessionName template: {prefix}, {org} and
// {job} (the scope: a job ID, "events" or "verify") are replaced, the result
// is restricted to STS's charset [\w+=,.@-] (others become "_"), trimmed of
// separators a missing part leaves, and cut to 64 characters. Captain's
// style is "captain-customer-{org}".
func FormatSessionName(template, prefix, org, scope string) string {
	if template == "" {
		template = SessionTemplateDefault
	}
	if prefix == "" {
		prefix = SessionPrefixDefault
	}
	s := strings.NewReplacer("{prefix}", prefix, "{org}", org, "{job}", scope).Replace(template)
	s = strings.Trim(sessionChars.ReplaceAllString(s, "_"), "-")
	if len(s) > 64 {
		s = s[:64]
	}
	if len(s) < 2 {
		s += "__"
	}
	return s
}

// CheckSessionTemplate refuses a template that would not tell tenants or
// jobs apart in CloudTrail: it must contain {org}.
func CheckSessionTemplate(template string) error {
	if template != "" && !strings.Contains(template, "{org}") {
		return fmt.Errorf("--session-name %q: the template must contain {org} (and may contain {prefix} and {job})", template)
	}
	return nil
}

// QueueARN derives an SQS queue's ARN from its URL
// (https://sqs.<region>.amazonaws.com/<account>/<name>; other hosts, such as
// emulators, take defaultRegion).
func QueueARN(queueURL, defaultRegion string) (string, error) {
	u, err := url.Parse(queueURL)
	if err != nil {
		return "", fmt.Errorf("queue URL %q: %w", queueURL, err)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || len(parts[0]) != 12 || parts[1] == "" {
		return "", fmt.Errorf("queue URL %q: want <endpoint>/<12-digit account>/<queue name>", queueURL)
	}
	region := defaultRegion
	if h := strings.Split(u.Hostname(), "."); len(h) >= 3 && h[0] == "sqs" {
		region = h[1]
	}
	return "arn:aws:sqs:" + region + ":" + parts[0] + ":" + parts[1], nil
}

// QueueSessionPolicy scopes a session to reading one queue.
func QueueSessionPolicy(queueARN string) string {
	b, _ := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": []map[string]any{{
		"Effect":   "Allow",
		"Action":   []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"},
		"Resource": []string{queueARN},
	}}})
	return string(b)
}
