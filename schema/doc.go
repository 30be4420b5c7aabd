// Package schema owns every name stevedore puts on the wire: message types and
// their strict decoders, subjects, streams, consumers and KV buckets. Nothing
// else spells a subject or a stream name.
//
// Messages are JSON objects with a "v" field holding the major version
// (currently 1). Decoding is strict where it matters for safety: an unknown
// major version, a missing required field, an invalid identifier or a message
// larger than MaxMessageBytes is a *DecodeError, which is permanent (errors.Is
// ErrPermanent): redelivering the same bytes cannot succeed. Unknown fields are
// ignored so that a newer producer can add optional fields without breaking
// older workers during a rolling upgrade.
package schema
