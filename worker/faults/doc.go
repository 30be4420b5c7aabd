// Package faults holds the named crash points of the fault-injection tier.
// In normal builds At does nothing; built with -tags faults (on.go) it
// crashes the process at a point with the rate STEVEDORE_FAULTS gives it,
// exactly as kill -9 would, and fails keys containing STEVEDORE_POISON
// permanently.
package faults

import "errors"

// ErrCrashed is what At returns in in-process tests of the fault build
// (Inject) instead of exiting: the caller then settles nothing.
var ErrCrashed = errors.New("simulated crash")
