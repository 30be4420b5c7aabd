package creds

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// ListObjects lists one page of a bucket (ListObjectsV2) with t's
// credentials for req, as WithS3 does, on GetObject's lean path (get.go):
// endpoint resolved once, SigV4 by the SDK's signer, errors as smithy API
// errors, transient failures retried twice in-call. The SDK's
// deserializer took 14 ms of CPU per page of 1,000 keys (encoding/xml's
// tokens, as much as the rest of planning a page); decodeListDoc reads the
// same page in under 2 ms.
//
// Keys are asked for URL-encoded (encoding-type=url) and decoded here, so a
// key with characters XML 1.0 cannot carry (control characters) lists like
// any other instead of failing its page. What it reads of in: Bucket,
// Prefix, StartAfter, ContinuationToken, MaxKeys, ExpectedBucketOwner; of
// the answer it keeps IsTruncated, NextContinuationToken and each object's
// Key, ETag, Size and LastModified.
func (r *Resolver) ListObjects(ctx context.Context, t *Tenant, req Request, region string, in *s3.ListObjectsV2Input) (*s3.ListObjectsV2Output, error) {
	var out *s3.ListObjectsV2Output
	err := r.WithS3(ctx, t, req, region, func(c *s3.Client) error {
		var err error
		out, err = r.lean(c).list(ctx, in)
		return err
	})
	return out, err
}

// maxListBody bounds a listing page's answer: 1,000 keys of S3's 1,024-byte
// maximum, each URL-encoded three bytes a byte, are about 3 MiB.
const maxListBody = 16 << 20

func (l *leanS3) list(ctx context.Context, in *s3.ListObjectsV2Input) (*s3.ListObjectsV2Output, error) {
	ep, err := l.endpoint(ctx, aws.ToString(in.Bucket))
	if err != nil {
		return nil, err
	}
	if ep.sdk {
		return l.client.ListObjectsV2(ctx, in)
	}
	target, err := listURL(ep.base, in)
	if err != nil {
		return nil, err
	}
	var out *s3.ListObjectsV2Output
	err = retry(ctx, "ListObjectsV2", func() error {
		resp, err := l.send(ctx, ep, target, aws.ToString(in.ExpectedBucketOwner), "ListObjectsV2")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		// Read into a buffer of the announced size (a 1,000-key page is
		// ~300 KB; io.ReadAll would grow to it by doubling).
		var buf bytes.Buffer
		if resp.ContentLength > 0 && resp.ContentLength <= maxListBody {
			buf.Grow(int(resp.ContentLength) + 1)
		}
		if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxListBody+1)); err != nil {
			return err
		}
		body := buf.Bytes()
		if len(body) > maxListBody {
			return fmt.Errorf("a listing page of more than %d bytes", maxListBody)
		}
		out, err = listOutput(body)
		return err
	})
	return out, err
}

// listURL is the ListObjectsV2 request of in at an endpoint's base: the
// bucket's root ("/" on a virtual host, "/bucket" path-style, as the SDK
// sends it).
func listURL(base string, in *s3.ListObjectsV2Input) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("S3 endpoint %q: %w", base, err)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	q := url.Values{"list-type": {"2"}, "encoding-type": {"url"}}
	if in.MaxKeys != nil {
		q.Set("max-keys", strconv.Itoa(int(*in.MaxKeys)))
	}
	for name, v := range map[string]*string{"prefix": in.Prefix, "start-after": in.StartAfter, "continuation-token": in.ContinuationToken} {
		if v != nil {
			q.Set(name, *v)
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// listOutput is a listing page's answer as the SDK would give it, for the
// fields ListObjects keeps.
func listOutput(body []byte) (*s3.ListObjectsV2Output, error) {
	doc, err := decodeListDoc(body)
	if err != nil {
		return nil, fmt.Errorf("read a listing page: %w", err)
	}
	out := &s3.ListObjectsV2Output{IsTruncated: aws.Bool(doc.IsTruncated), Contents: make([]types.Object, len(doc.Contents))}
	if doc.NextContinuationToken != "" {
		out.NextContinuationToken = aws.String(doc.NextContinuationToken)
	}
	for i, e := range doc.Contents {
		key := e.Key
		if doc.EncodingType == "url" {
			if key, err = url.QueryUnescape(e.Key); err != nil {
				return nil, fmt.Errorf("read a listing page: key %q: %w", e.Key, err)
			}
		}
		o := &out.Contents[i]
		o.Key, o.ETag, o.Size = aws.String(key), aws.String(e.ETag), aws.Int64(e.Size)
		if e.LastModified != "" {
			at, err := time.Parse(time.RFC3339Nano, e.LastModified)
			if err != nil {
				return nil, fmt.Errorf("read a listing page: key %q: LastModified: %w", key, err)
			}
			o.LastModified = aws.Time(at)
		}
	}
	return out, nil
}
