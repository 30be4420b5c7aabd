package worker

import (
	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/runner"
)

// classify is the runner's Config.Classify: err's class, hint and stable
// code (creds.ErrorCode), once, as the schema's one error type. A class
// err carries itself (runner.Known) is kept; anything else is classified
// by the AWS error taxonomy (creds.Classify). The result wraps err: its
// message is err's, and errors.Is/As see through it.
func classify(err error) *schema.ClassError {
	f := &schema.ClassError{Err: err, Code: creds.ErrorCode(err)}
	if k := runner.Known(err); k != nil {
		f.Class, f.Hint = k.Class, k.Hint
		return f
	}
	c := creds.Classify(err)
	f.Class, f.Hint = c.Class, c.Hint
	return f
}
