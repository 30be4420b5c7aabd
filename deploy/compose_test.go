package deploy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeFleet loads docker-compose.yml with compose-go (what `docker
// compose` itself uses) and checks the fleet it describes: a 3-node NATS
// cluster with health checks the fleet waits on, pinned images, restart
// policies, stop grace above the shutdown grace, stevedore's environment
// against the binary's flags, and files that exist.
func TestComposeFleet(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yml"}, cli.WithWorkingDirectory(".."), cli.WithName("stevedore"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"nats-1", "nats-2", "nats-3", "minio", "minio-setup", "producer", "worker", "prometheus", "grafana"} {
		if _, ok := project.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	natsVersion := string(regexp.MustCompile(`github.com/nats-io/nats-server/v2 v(\S+)`).FindSubmatch(gomod)[1])
	for name, s := range project.Services {
		if s.Image == "" || strings.HasSuffix(s.Image, ":latest") || !strings.Contains(s.Image, ":") {
			t.Errorf("%s: image %q is not pinned", name, s.Image)
		}
		if name != "minio-setup" && s.Restart != "unless-stopped" {
			t.Errorf("%s: restart %q", name, s.Restart)
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s: mounts %s, which does not exist: %v", name, v.Source, err)
				}
			}
		}
		if strings.HasPrefix(name, "nats-") {
			if !strings.HasPrefix(s.Image, "nats:"+natsVersion) {
				t.Errorf("%s: image %s, go.mod pins nats-server %s", name, s.Image, natsVersion)
			}
			if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
				t.Errorf("%s: no health check", name)
			}
			routes := strings.Join(s.Command, " ")
			for _, peer := range []string{"nats-1", "nats-2", "nats-3"} {
				if peer != name && !strings.Contains(routes, "nats://"+peer+":6222") {
					t.Errorf("%s: no route to %s: %s", name, peer, routes)
				}
			}
		}
	}
	for _, name := range []string{"producer", "worker"} {
		s := project.Services[name]
		if len(s.Command) == 0 || s.Command[0] != name {
			t.Fatalf("%s: command %v", name, s.Command)
		}
		known := flagEnv(t, name)
		checkArgs(t, name, s.Command)
		for k := range s.Environment {
			if strings.HasPrefix(k, "STEVEDORE_") && !known[k] {
				t.Errorf("%s: %s is not an environment variable `stevedore %s` reads", name, k, name)
			}
		}
		if v := s.Environment["STEVEDORE_REPLICAS"]; v == nil || *v != "3" {
			t.Errorf("%s: STEVEDORE_REPLICAS %v, want 3 on a 3-node cluster", name, v)
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= 20*time.Second {
			t.Errorf("%s: stop_grace_period must exceed the 20 s shutdown grace", name)
		}
		for _, nats := range []string{"nats-1", "nats-2", "nats-3"} {
			if d, ok := s.DependsOn[nats]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: does not wait for %s to be healthy", name, nats)
			}
		}
	}
	if w := project.Services["worker"]; w.Deploy == nil || w.Deploy.Replicas == nil || *w.Deploy.Replicas != 2 {
		t.Errorf("worker replicas: %+v", w.Deploy)
	}
	// Prometheus loads the rules the tests check; Grafana the dashboard.
	mounted := func(service, source string) bool {
		for _, v := range project.Services[service].Volumes {
			if filepath.Clean(v.Source) == filepath.Clean(source) {
				return true
			}
		}
		return false
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	if !mounted("prometheus", abs("prometheus/stevedore-rules.yml")) {
		t.Error("prometheus does not load deploy/prometheus/stevedore-rules.yml")
	}
	if !mounted("grafana", abs("grafana/stevedore.json")) {
		t.Error("grafana does not load deploy/grafana/stevedore.json")
	}
}
