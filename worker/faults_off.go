//go:build !faults

package worker

// fault is a named crash point of the fault-injection tier (see
// faults_on.go, built only with -tags faults). Here it does nothing.
func fault(point, key string) error { return nil }
