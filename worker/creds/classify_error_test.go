package creds

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

func TestClassifyErrorKeepsKnownClasses(t *testing.T) {
	tests := []struct {
		err  error
		want schema.ErrorClass
	}{
		{schema.Errorf(schema.ClassTenantAuth, "integration revoked"), schema.ClassTenantAuth},
		{fmt.Errorf("wrapped: %w", schema.Errorf(schema.ClassKMS, "kms")), schema.ClassKMS},
		{&schema.DecodeError{Type: "task", Reason: "invalid_json"}, schema.ClassPermanent},
		{context.DeadlineExceeded, schema.ClassTransient},
		// Our own limits (a chunk with its custom metadata over the
		// message cap, a state record over the KV's): ours, not
		// transient, never aws_unavailable.
		{fmt.Errorf("publish chunks.o.c: %w", nats.ErrMaxPayload), schema.ClassInternal},
		{fmt.Errorf("save object state: %w", &jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}), schema.ClassInternal},
	}
	for _, tt := range tests {
		if got := ClassifyError(tt.err).Class; got != tt.want {
			t.Errorf("ClassifyError(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
	f := ClassifyError(fmt.Errorf("publish: %w", nats.ErrMaxPayload))
	if f.Code != schema.CodeInternalLimit || f.Class.Retryable() {
		t.Errorf("an over-limit publish: code %s, retryable %v", f.Code, f.Class.Retryable())
	}
}
