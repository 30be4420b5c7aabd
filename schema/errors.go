package schema

import (
	"errors"
	"fmt"
)

// ErrPermanent marks errors that no retry can fix. Test with errors.Is.
var ErrPermanent = errors.New("permanent")

// DecodeError reports why a message could not be decoded. It is permanent.
type DecodeError struct {
	Type   string // message type being decoded, e.g. "job"
	Reason string // short machine-readable reason: "invalid_json", "unsupported_version", "missing_field", "invalid_field", "too_large"
	Detail string // human-readable detail
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode %s: %s: %s", e.Type, e.Reason, e.Detail)
}

// Is makes errors.Is(err, ErrPermanent) true for decode errors.
func (e *DecodeError) Is(target error) bool { return target == ErrPermanent }
