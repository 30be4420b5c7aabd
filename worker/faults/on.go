//go:build faults

package faults

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"github.com/stevedore-dev/stevedore/schema"
)

// This file exists only in test builds (go build -tags faults). It lets the
// fault-injection tier crash a worker at named points inside a task:
//
//	STEVEDORE_FAULTS="after_download=0.01,after_chunks=0.01,after_state=0.01,before_ack=0.01,before_fold=0.01"
//	STEVEDORE_POISON="poison"   # keys containing it fail permanently
//
// A crash is os.Exit(86): nothing is settled, so JetStream redelivers the
// message after AckWait, exactly as after kill -9.
var faultRates = parseFaults(os.Getenv("STEVEDORE_FAULTS"))

// crash ends the process; in-process tests replace it (Inject).
var crash = func(point, key string) error {
	fmt.Fprintf(os.Stderr, "FAULT %s %s: crashing\n", point, key)
	os.Exit(86)
	return nil
}

func parseFaults(spec string) map[string]float64 {
	rates := map[string]float64{}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if p, err := strconv.ParseFloat(v, 64); ok && err == nil {
			rates[k] = p
		}
	}
	return rates
}

// Inject sets the crash rates and what a crash does (in-process tests
// return ErrCrashed from it) until the returned restore is called.
func Inject(rates map[string]float64, fn func(point, key string) error) (restore func()) {
	prevRates, prevCrash := faultRates, crash
	faultRates, crash = rates, fn
	return func() { faultRates, crash = prevRates, prevCrash }
}

// At crashes the process at point with its configured rate (key names the
// work, for the log and for STEVEDORE_POISON).
func At(point, key string) error {
	if p := os.Getenv("STEVEDORE_POISON"); p != "" && point == "after_download" && strings.Contains(key, p) {
		return schema.Errorf(schema.ClassPermanent, "poisoned by the fault-injection build: key contains %q", p)
	}
	if r := faultRates[point]; r > 0 && rand.Float64() < r {
		return crash(point, key)
	}
	return nil
}
