package creds

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
)

// The lean listing is signed as S3 checks it (the fake verifies every
// request's signature), pages as the SDK's ListObjectsV2 does (prefix,
// start-after, continuation tokens) with the same keys, ETags, sizes and
// times, reads keys XML cannot carry, and fails as the SDK fails.
func TestLeanListPagesLikeTheSDK(t *testing.T) {
	fake, sdk, wrongSecret := leanFake(t, "p/plain.txt", "p/a b+c.txt", "p/ünïcödé ✓.txt", "p/100% sure.txt", "p/q?x=1&y=2#frag.txt",
		"p/<tag> & \"quote\".txt", "p/日本語/ファイル.txt", "p/dir//double.txt", "p/tilde~(1).txt", "other/x.txt")
	l := (&Resolver{}).lean(sdk)
	ctx := context.Background()
	for _, start := range []*string{nil, aws.String("p/b")} {
		in := &s3.ListObjectsV2Input{Bucket: aws.String("lean-bucket"), Prefix: aws.String("p/"), StartAfter: start, MaxKeys: aws.Int32(3)}
		sdkList := func(ctx context.Context, in *s3.ListObjectsV2Input) (*s3.ListObjectsV2Output, error) {
			return sdk.ListObjectsV2(ctx, in)
		}
		want, got := listAll(t, ctx, sdkList, in), listAll(t, ctx, l.list, in)
		if !slices.Equal(got, want) || len(want) == 0 {
			t.Fatalf("start after %q:\nlean %q\nSDK  %q", aws.ToString(start), got, want)
		}
	}
	// A key with a control character: the SDK cannot read the page it is
	// on (XML 1.0 cannot carry it); URL-encoded, it lists as it is.
	fake.Put("lean-bucket", "c/bell\x07.txt", "ding")
	got := listAll(t, ctx, l.list, &s3.ListObjectsV2Input{Bucket: aws.String("lean-bucket"), Prefix: aws.String("c/")})
	if len(got) != 1 || !strings.HasPrefix(got[0], "c/bell\x07.txt "+awstest.ETag("ding")+" 4 ") {
		t.Fatalf("control character: %q", got)
	}

	for _, tc := range []struct {
		client *s3.Client
		in     *s3.ListObjectsV2Input
		code   string
		class  schema.ErrorClass
	}{
		{sdk, &s3.ListObjectsV2Input{Bucket: aws.String("no-such-bucket")}, "AccessDenied", schema.ClassTenantPermission},
		{sdk, &s3.ListObjectsV2Input{Bucket: aws.String("lean-bucket"), ExpectedBucketOwner: aws.String("999999999999")}, "AccessDenied", schema.ClassTenantPermission},
		{wrongSecret, &s3.ListObjectsV2Input{Bucket: aws.String("lean-bucket")}, "SignatureDoesNotMatch", ""},
	} {
		_, sdkErr := tc.client.ListObjectsV2(ctx, tc.in)
		_, err := (&Resolver{}).lean(tc.client).list(ctx, tc.in)
		failsAsTheSDK(t, err, sdkErr, tc.code, tc.class)
	}
	// Throttled every time: retried in-call, then classified.
	fake.FailLists.Store(true)
	if _, err := l.list(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("lean-bucket")}); err == nil || Classify(err).Class != schema.ClassThrottled {
		t.Fatalf("throttled: %v (%+v)", err, Classify(err))
	}
}

// listAll lists every page of in with list, as "key etag size modified"
// lines.
func listAll(t *testing.T, ctx context.Context, list func(context.Context, *s3.ListObjectsV2Input) (*s3.ListObjectsV2Output, error), in *s3.ListObjectsV2Input) []string {
	t.Helper()
	var out []string
	page := *in
	for {
		got, err := list(ctx, &page)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range got.Contents {
			if o.LastModified == nil || o.LastModified.IsZero() {
				t.Fatalf("%q: no LastModified", aws.ToString(o.Key))
			}
			out = append(out, fmt.Sprint(aws.ToString(o.Key), " ", aws.ToString(o.ETag), " ", aws.ToInt64(o.Size), " ", o.LastModified.UTC().Format(time.RFC3339Nano)))
		}
		if !aws.ToBool(got.IsTruncated) {
			return out
		}
		page.ContinuationToken, page.StartAfter = got.NextContinuationToken, nil
	}
}
