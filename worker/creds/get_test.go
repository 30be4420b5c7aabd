package creds

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
)

// The lean GET is signed as S3 checks it (the fake re-signs every request
// of a key with a known secret and compares), escapes keys as the SDK does,
// and answers what the SDK's GetObject answers.
func TestLeanGetSignsAndEscapesLikeTheSDK(t *testing.T) {
	keys := []string{"plain.txt", "a b+c.txt", "ünïcödé ✓.txt", "100% sure.txt", "q?x=1&y=2#frag.txt", "tilde~(1)[2]{3}.txt",
		"semi;colon,comma=eq@at$dollar'quote!.txt", "日本語/ファイル.txt", "dir//double.txt", "dots/../x.txt"}
	_, sdk, wrongSecret := leanFake(t, keys...)
	r := &Resolver{}
	ctx := context.Background()
	for _, k := range keys {
		in := &s3.GetObjectInput{Bucket: aws.String("lean-bucket"), Key: aws.String(k)}
		want, err := sdk.GetObject(ctx, in)
		if err != nil {
			t.Fatalf("SDK GET %q: %v", k, err)
		}
		wantBody, _ := io.ReadAll(want.Body)
		got, err := r.lean(sdk).get(ctx, in)
		if err != nil {
			t.Fatalf("lean GET %q: %v", k, err)
		}
		gotBody, _ := io.ReadAll(got.Body)
		got.Body.Close()
		if string(gotBody) != string(wantBody) || aws.ToString(got.ETag) != aws.ToString(want.ETag) || aws.ToInt64(got.ContentLength) != aws.ToInt64(want.ContentLength) {
			t.Fatalf("%q: lean %q %s %d, SDK %q %s %d", k, gotBody, aws.ToString(got.ETag), aws.ToInt64(got.ContentLength), wantBody, aws.ToString(want.ETag), aws.ToInt64(want.ContentLength))
		}
	}
	// Errors read as the SDK's do: code, class, the public message.
	for _, tc := range []struct {
		client *s3.Client
		in     *s3.GetObjectInput
		code   string
		class  schema.ErrorClass
	}{
		{sdk, &s3.GetObjectInput{Bucket: aws.String("lean-bucket"), Key: aws.String("missing.txt")}, "NoSuchKey", schema.ClassNotFound},
		{sdk, &s3.GetObjectInput{Bucket: aws.String("lean-bucket"), Key: aws.String("plain.txt"), ExpectedBucketOwner: aws.String("999999999999")}, "AccessDenied", schema.ClassTenantPermission},
		{wrongSecret, &s3.GetObjectInput{Bucket: aws.String("lean-bucket"), Key: aws.String("plain.txt")}, "SignatureDoesNotMatch", ""},
	} {
		_, sdkErr := tc.client.GetObject(ctx, tc.in)
		_, err := r.lean(tc.client).get(ctx, tc.in)
		failsAsTheSDK(t, err, sdkErr, tc.code, tc.class)
	}
}

// leanFake starts the fake S3 with keys in "lean-bucket", readable with a
// static key whose secret it knows (it re-signs every request and
// compares): sdk is a client with that secret, wrongSecret one without.
func leanFake(t *testing.T, keys ...string) (fake *awstest.S3, sdk, wrongSecret *s3.Client) {
	t.Helper()
	_, fake = awstest.Start(t)
	fake.AllowStaticSecret("AKIALEAN", "lean-secret", "lean-bucket")
	fake.CreateBucket("lean-bucket")
	for _, k := range keys {
		fake.Put("lean-bucket", k, "body of "+k)
	}
	sdk = NewS3(fake.Config(), credentials.NewStaticCredentialsProvider("AKIALEAN", "lean-secret", ""), "us-east-1", true)
	wrongSecret = NewS3(fake.Config(), credentials.NewStaticCredentialsProvider("AKIALEAN", "not-the-secret", ""), "us-east-1", true)
	return fake, sdk, wrongSecret
}

// failsAsTheSDK fails t unless the lean path's err reads as the SDK's
// sdkErr (code, class, public message), with code and, unless "", class.
func failsAsTheSDK(t *testing.T, err, sdkErr error, code string, class schema.ErrorClass) {
	t.Helper()
	if err == nil || Classify(err).Code != code || Classify(err).Class != Classify(sdkErr).Class || PublicMessage(err) != PublicMessage(sdkErr) {
		t.Fatalf("%s: lean %v (%+v, %q); SDK %v (%+v, %q)", code, err, Classify(err), PublicMessage(err), sdkErr, Classify(sdkErr), PublicMessage(sdkErr))
	}
	if class != "" && Classify(err).Class != class {
		t.Fatalf("%s classified %s", code, Classify(err).Class)
	}
}

// Transient answers are retried twice in-call; the body S3 sent is returned
// as stored (no transparent gunzip), and a third failure is returned.
func TestLeanGetRetriesTransientAnswers(t *testing.T) {
	var calls atomic.Int64
	var fail atomic.Int64
	fail.Store(2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "identity" || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") ||
			r.Header.Get("X-Amz-Security-Token") != "session-token" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if calls.Add(1) <= fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>`)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("ETag", `"e"`)
		_, _ = io.WriteString(w, "not really gzip")
	}))
	defer srv.Close()
	c := NewS3(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), HTTPClient: srv.Client()},
		credentials.NewStaticCredentialsProvider("AKIA", "secret", "session-token"), "us-east-1", true)
	r := &Resolver{}
	in := &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k.gz")}
	out, err := r.lean(c).get(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(out.Body)
	if string(body) != "not really gzip" || aws.ToString(out.ContentEncoding) != "gzip" || calls.Load() != 3 {
		t.Fatalf("body %q, encoding %q, %d calls", body, aws.ToString(out.ContentEncoding), calls.Load())
	}
	calls.Store(0)
	fail.Store(3)
	if _, err := r.lean(c).get(context.Background(), in); err == nil || Classify(err).Class != schema.ClassThrottled || calls.Load() != 3 {
		t.Fatalf("after three 503s: %v (%+v), %d calls", err, Classify(err), calls.Load())
	}
}

// The signing scheme comes from the SDK's endpoint rules: a plain bucket is
// SigV4 "s3" in its region, on the bucket's virtual host; an S3 Express
// directory bucket needs another scheme and is left to the SDK's GetObject.
func TestLeanGetEndpointSchemes(t *testing.T) {
	c := NewS3(aws.Config{Region: "eu-west-1"}, credentials.NewStaticCredentialsProvider("AKIA", "secret", ""), "eu-west-1", false)
	l := (&Resolver{}).lean(c)
	ctx := context.Background()
	ep, err := l.endpoint(ctx, "plain-bucket")
	if err != nil {
		t.Fatal(err)
	}
	if ep.sdk || ep.signingName != "s3" || ep.signingRegion != "eu-west-1" || ep.base != "https://plain-bucket.s3.eu-west-1.amazonaws.com" {
		t.Fatalf("plain bucket: %+v", ep)
	}
	ep, err = l.endpoint(ctx, "express--euw1-az1--x-s3")
	if err != nil {
		t.Fatal(err)
	}
	if !ep.sdk {
		t.Fatalf("a directory bucket was to be signed with SigV4 by the lean GET: %+v", ep)
	}
}
