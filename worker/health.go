package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// RecordHealth returns the broker's Config.OnHealth: it records the
// broker's view of a role on its integration (the API and job errors carry
// the reason). The broker calls it on transitions only.
func RecordHealth(reg *registry.Registry, log *slog.Logger) func(creds.Request, *creds.Classified) {
	return func(req creds.Request, c *creds.Classified) {
		if req.Org == "" || req.Integration == "" {
			return
		}
		var h *registry.Health
		if c != nil {
			h = &registry.Health{Class: string(c.Class), Code: c.Code, Hint: c.Hint, Since: time.Now().UTC()}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := reg.SetHealth(ctx, "worker", req.Org, req.Integration, h); err != nil {
			log.Warn("could not record integration health", "org", req.Org, "integration", req.Integration, "error", err)
		}
	}
}
