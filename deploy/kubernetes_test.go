package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// manifests is one overlay, built by kustomize and decoded.
type manifests struct {
	yaml          []byte
	deployments   []appsv1.Deployment
	services      []corev1.Service
	configMaps    []corev1.ConfigMap
	accounts      []corev1.ServiceAccount
	pdbs          []policyv1.PodDisruptionBudget
	policies      []networkingv1.NetworkPolicy
	scaledObjects []kedav1alpha1.ScaledObject
	podMonitors   []monitoringv1.PodMonitor
	rules         []monitoringv1.PrometheusRule
	namespaces    []corev1.Namespace
}

func (m *manifests) count() int {
	return len(m.deployments) + len(m.services) + len(m.configMaps) + len(m.accounts) + len(m.pdbs) + len(m.policies) +
		len(m.scaledObjects) + len(m.podMonitors) + len(m.rules) + len(m.namespaces)
}

// build runs kustomize on an overlay and decodes every object strictly into
// its upstream Go type (unknown fields are errors): k8s.io/api, KEDA's
// ScaledObject and the Prometheus Operator's PodMonitor.
func build(t *testing.T, overlay string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("kubernetes", "overlays", overlay))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", overlay, err)
	}
	m := &manifests{}
	if m.yaml, err = res.AsYaml(); err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var into any
		switch r.GetKind() {
		case "Deployment":
			into = grow(&m.deployments)
		case "Service":
			into = grow(&m.services)
		case "ConfigMap":
			into = grow(&m.configMaps)
		case "ServiceAccount":
			into = grow(&m.accounts)
		case "PodDisruptionBudget":
			into = grow(&m.pdbs)
		case "NetworkPolicy":
			into = grow(&m.policies)
		case "ScaledObject":
			into = grow(&m.scaledObjects)
		case "PodMonitor":
			into = grow(&m.podMonitors)
		case "PrometheusRule":
			into = grow(&m.rules)
		case "Namespace":
			into = grow(&m.namespaces)
		default:
			t.Fatalf("%s: a %s, which the test does not know", overlay, r.GetKind())
		}
		if err := yaml.UnmarshalStrict(data, into); err != nil {
			t.Fatalf("%s %s/%s: %v", overlay, r.GetKind(), r.GetName(), err)
		}
	}
	return m
}

// grow appends a zero value to list and returns a pointer to it, for the
// decoder to fill.
func grow[T any](list *[]T) *T {
	*list = append(*list, *new(T))
	return &(*list)[len(*list)-1]
}

var (
	helpOnce sync.Once
	helpText = map[string]string{}
	helpErr  error
)

// flagEnv returns the environment variables `stevedore <command>` reads (its
// -h output names each flag's).
func flagEnv(t *testing.T, command string) map[string]bool {
	t.Helper()
	helpOnce.Do(func() {
		bin := filepath.Join(os.TempDir(), fmt.Sprintf("stevedore-deploy-test-%d", os.Getpid()))
		defer os.Remove(bin)
		if out, err := exec.Command("go", "build", "-o", bin, "../cmd/stevedore").CombinedOutput(); err != nil {
			helpErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		for _, c := range []string{"producer", "worker", "pdf-cache"} {
			out, err := exec.Command(bin, c, "-h").CombinedOutput()
			if err != nil {
				helpErr = fmt.Errorf("%s -h: %v", c, err)
				return
			}
			helpText[c] = string(out)
		}
	})
	if helpErr != nil {
		t.Fatal(helpErr)
	}
	env := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(env (STEVEDORE_[A-Z0-9_]+)\)`).FindAllStringSubmatch(helpText[command], -1) {
		env[m[1]] = true
	}
	least := 10
	if command == "pdf-cache" {
		least = 2 // --cache-dir and --pdf-memory-mib
	}
	if len(env) < least {
		t.Fatalf("%s -h names %d environment variables", command, len(env))
	}
	return env
}

// TestKubernetesManifests builds the dev and prod overlays and checks every
// cross-reference a cluster would only report at run time.
func TestKubernetesManifests(t *testing.T) {
	have := registered(t)
	for _, overlay := range []string{"dev", "prod"} {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, overlay)
			t.Logf("kustomize build %s: %d objects, %d bytes", overlay, m.count(), len(m.yaml))
			if len(m.deployments) != 2 || len(m.services) != 1 || len(m.pdbs) != 2 || len(m.scaledObjects) != 1 || len(m.podMonitors) != 1 ||
				len(m.policies) != 1 || len(m.accounts) != 1 || len(m.configMaps) != 1 {
				t.Fatalf("objects: %d deployments, %d services, %d PDBs, %d scaled objects, %d pod monitors, %d network policies, %d accounts, %d config maps",
					len(m.deployments), len(m.services), len(m.pdbs), len(m.scaledObjects), len(m.podMonitors), len(m.policies), len(m.accounts), len(m.configMaps))
			}
			checkPrometheusRule(t, m)
			if ns := map[string]string{"dev": "stevedore-dev", "prod": "stevedore"}[overlay]; len(m.namespaces) != 1 || m.namespaces[0].Name != ns ||
				m.deployments[0].Namespace != ns {
				t.Errorf("namespace objects %+v, deployments in %q: want the overlay to make %s and put everything in it", m.namespaces, m.deployments[0].Namespace, ns)
			}
			cm := m.configMaps[0]
			wantReplicas := map[string]string{"dev": "1", "prod": "3"}[overlay]
			if cm.Data["STEVEDORE_REPLICAS"] != wantReplicas {
				t.Errorf("STEVEDORE_REPLICAS %q, want %q", cm.Data["STEVEDORE_REPLICAS"], wantReplicas)
			}
			sa := m.accounts[0]
			if !strings.HasPrefix(sa.Annotations["eks.amazonaws.com/role-arn"], "arn:aws:iam::") {
				t.Errorf("service account without an IRSA role: %v", sa.Annotations)
			}
			pods := map[string]labels.Set{}
			for _, d := range m.deployments {
				checkDeployment(t, d, cm, sa.Name)
				pods[d.Name] = d.Spec.Template.Labels
			}
			selects := func(sel map[string]string) []string {
				var out []string
				for name, l := range pods {
					if labels.SelectorFromSet(sel).Matches(l) {
						out = append(out, name)
					}
				}
				slices.Sort(out)
				return out
			}
			svc := m.services[0]
			if got := selects(svc.Spec.Selector); !slices.Equal(got, []string{"stevedore-producer"}) {
				t.Errorf("service %s selects %v", svc.Name, got)
			}
			for _, p := range svc.Spec.Ports {
				if !hasPort(m.deployment("stevedore-producer"), p.TargetPort.String()) {
					t.Errorf("service port %s targets %s, which the producer does not expose", p.Name, p.TargetPort.String())
				}
			}
			for _, pdb := range m.pdbs {
				if got := selects(pdb.Spec.Selector.MatchLabels); len(got) != 1 || got[0] != pdb.Name {
					t.Errorf("PDB %s selects %v", pdb.Name, got)
				}
			}
			if got := selects(m.policies[0].Spec.PodSelector.MatchLabels); len(got) != 2 {
				t.Errorf("network policy selects %v", got)
			}
			pm := m.podMonitors[0]
			if got := selects(pm.Spec.Selector.MatchLabels); len(got) != 2 {
				t.Errorf("pod monitor selects %v", got)
			}
			for _, ep := range pm.Spec.PodMetricsEndpoints {
				for _, d := range m.deployments {
					if ep.Port == nil || !hasPort(&d, *ep.Port) || ep.Path != "/metrics" {
						t.Errorf("pod monitor scrapes %v%s, which %s does not serve", ep.Port, ep.Path, d.Name)
					}
				}
			}
			so := m.scaledObjects[0]
			if so.APIVersion != "keda.sh/v1alpha1" || so.Spec.ScaleTargetRef == nil || so.Spec.ScaleTargetRef.Name != "stevedore-worker" ||
				so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 || so.Spec.MaxReplicaCount == nil ||
				*so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount || len(so.Spec.Triggers) == 0 || m.deployment(so.Spec.ScaleTargetRef.Name) == nil {
				t.Errorf("scaled object %+v", so.Spec)
			}
			if so.Spec.Fallback == nil || so.Spec.Fallback.Replicas < 1 {
				t.Errorf("scaled object without a fallback for when Prometheus is down: %+v", so.Spec.Fallback)
			}
			if w := m.deployment("stevedore-worker"); w == nil || w.Spec.Replicas != nil {
				t.Errorf("the worker Deployment sets replicas: every kubectl apply would reset KEDA's count")
			}
			for _, tr := range so.Spec.Triggers {
				if ns := map[string]string{"dev": "stevedore-dev", "prod": "stevedore"}[overlay]; !strings.Contains(tr.Metadata["query"], `namespace="`+ns+`"`) {
					t.Errorf("trigger query %q is not scoped to the namespace %s", tr.Metadata["query"], ns)
				}
				for _, metric := range metricRE.FindAllString(tr.Metadata["query"], -1) {
					if !have[metric] {
						t.Errorf("the scaler's query names %s, which the code does not register", metric)
					}
				}
				if tr.Type != "prometheus" || tr.Metadata["threshold"] == "" || !strings.HasPrefix(tr.Metadata["serverAddress"], "http") {
					t.Errorf("trigger %+v", tr)
				}
			}
		})
	}
}

// checkArgs requires every --flag of a command line to be one of the
// command's flags.
func checkArgs(t *testing.T, where string, args []string) {
	t.Helper()
	for _, a := range args[1:] {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if !strings.Contains(helpText[args[0]], "\n  --"+name+" ") && !strings.Contains(helpText[args[0]], "\n  --"+name+"\n") {
			t.Errorf("%s: --%s is not a flag of `stevedore %s`", where, name, args[0])
		}
	}
}

func (m *manifests) deployment(name string) *appsv1.Deployment {
	for i := range m.deployments {
		if m.deployments[i].Name == name {
			return &m.deployments[i]
		}
	}
	return nil
}

func hasPort(d *appsv1.Deployment, name string) bool {
	if d == nil {
		return false
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

// checkDeployment: selector, command, environment against the binary's
// flags, probes, ports, grace period, volumes, service account.
func checkDeployment(t *testing.T, d appsv1.Deployment, cm corev1.ConfigMap, account string) {
	t.Helper()
	if !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: selector %v does not match its pods %v", d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != account {
		t.Errorf("%s: service account %q, want %q", d.Name, spec.ServiceAccountName, account)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", d.Name, len(spec.Containers))
	}
	// The overlay's images: a release in a registry, by version or digest; never :latest.
	if image := spec.Containers[0].Image; !regexp.MustCompile(`^[a-z0-9.-]+\.[a-z]+/[a-z0-9/_-]+/stevedore(:v[0-9]+\.[0-9]+\.[0-9]+|@sha256:[0-9a-f]{64})$`).MatchString(image) {
		t.Errorf("%s: image %q is not a release in a registry", d.Name, image)
	}
	c := spec.Containers[0]
	if len(c.Args) == 0 || (c.Args[0] != "producer" && c.Args[0] != "worker") {
		t.Fatalf("%s: args %v", d.Name, c.Args)
	}
	known := flagEnv(t, c.Args[0])
	checkArgs(t, d.Name, c.Args)
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil || from.ConfigMapRef.Name != cm.Name {
			t.Errorf("%s: envFrom %+v is not the stevedore config map (%s)", d.Name, from, cm.Name)
			continue
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for name := range env {
		if strings.HasPrefix(name, "AWS_") || name == "STEVEDORE_KEK" { // the KEK itself is read from the environment, never a flag
			continue
		}
		if !known[name] {
			t.Errorf("%s: %s is not an environment variable `stevedore %s` reads", d.Name, name, c.Args[0])
		}
	}
	// The metrics listener the probes and scrapes use.
	_, port, _ := strings.Cut(env["STEVEDORE_METRICS_LISTEN"], ":")
	for _, p := range c.Ports {
		if p.Name == "metrics" && fmt.Sprint(p.ContainerPort) != port {
			t.Errorf("%s: metrics port %d, but STEVEDORE_METRICS_LISTEN is %q", d.Name, p.ContainerPort, env["STEVEDORE_METRICS_LISTEN"])
		}
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s: probe %+v, want %s on the metrics port", d.Name, probe, path)
		}
	}
	grace := 20 * time.Second
	if v, ok := env["STEVEDORE_SHUTDOWN_GRACE"]; ok {
		var err error
		if grace, err = time.ParseDuration(v); err != nil {
			t.Errorf("%s: STEVEDORE_SHUTDOWN_GRACE %q: %v", d.Name, v, err)
		}
	}
	if spec.TerminationGracePeriodSeconds == nil || time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second <= grace {
		t.Errorf("%s: terminationGracePeriodSeconds must exceed the shutdown grace %s", d.Name, grace)
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("%s: resources %+v", d.Name, c.Resources)
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	for _, vm := range c.VolumeMounts {
		if !volumes[vm.Name] {
			t.Errorf("%s: mount %s has no volume", d.Name, vm.Name)
		}
	}
	// Files the environment points at are mounted.
	for _, name := range []string{"STEVEDORE_NATS_CREDS", "STEVEDORE_NATS_NKEY", "STEVEDORE_NATS_TLS_CA", "STEVEDORE_KEK_FILE", "STEVEDORE_CACHE_DIR"} {
		path, ok := env[name]
		if !ok {
			continue
		}
		mounted := false
		for _, vm := range c.VolumeMounts {
			mounted = mounted || strings.HasPrefix(path, vm.MountPath+"/")
		}
		if !mounted {
			t.Errorf("%s: %s=%s is on no mounted volume", d.Name, name, path)
		}
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: root file system not read-only", d.Name)
	} else if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == "/tmp" }) {
		t.Errorf("%s: read-only root without a writable /tmp (containers and PDFs are spooled there)", d.Name)
	}
	if c.Args[0] == "worker" {
		checkPDFCache(t, d, c, env)
	}
}

// checkPDFCache: PDFium is compiled into the image (the Dockerfile runs
// pdf-cache into the directory the worker's STEVEDORE_PDF_CACHE_SEED
// names), no init container compiles it, and the worker's cache directory
// is on a writable volume (a node with other CPU features compiles its own
// there; the root file system is read-only).
func checkPDFCache(t *testing.T, d appsv1.Deployment, worker corev1.Container, workerEnv map[string]string) {
	t.Helper()
	if ics := d.Spec.Template.Spec.InitContainers; len(ics) != 0 {
		t.Errorf("%s: init containers %+v: PDFium is compiled into the image", d.Name, ics)
	}
	seed := workerEnv["STEVEDORE_PDF_CACHE_SEED"]
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if seed == "" || !strings.Contains(string(dockerfile), `RUN ["/stevedore", "pdf-cache", "--cache-dir", "`+seed+`"]`) ||
		!strings.Contains(string(dockerfile), "ENV STEVEDORE_PDF_CACHE_SEED="+seed+"\n") {
		t.Errorf("%s: STEVEDORE_PDF_CACHE_SEED=%q is not the directory the Dockerfile compiles PDFium into", d.Name, seed)
	}
	dir := workerEnv["STEVEDORE_CACHE_DIR"]
	writable := false
	for _, vm := range worker.VolumeMounts {
		if strings.HasPrefix(dir, vm.MountPath+"/") && !vm.ReadOnly {
			for _, v := range d.Spec.Template.Spec.Volumes {
				writable = writable || v.Name == vm.Name && v.EmptyDir != nil
			}
		}
	}
	if dir == "" || !writable {
		t.Errorf("%s: the cache directory %q is not on a writable emptyDir", d.Name, dir)
	}
}

// natsValues is what the test reads of nats-values.yaml (decoded strictly:
// an unknown key is an error).
type natsValues struct {
	Config struct {
		Cluster struct {
			Enabled  bool    `json:"enabled"`
			Replicas int     `json:"replicas"`
			TLS      natsTLS `json:"tls"`
		} `json:"cluster"`
		Nats struct {
			TLS natsTLS `json:"tls"`
		} `json:"nats"`
		JetStream struct {
			Enabled   bool `json:"enabled"`
			FileStore struct {
				Enabled bool   `json:"enabled"`
				Dir     string `json:"dir"`
				PVC     struct {
					Enabled bool   `json:"enabled"`
					Size    string `json:"size"`
				} `json:"pvc"`
			} `json:"fileStore"`
			MemoryStore struct {
				Enabled bool `json:"enabled"`
			} `json:"memoryStore"`
		} `json:"jetstream"`
		Monitor struct {
			Enabled bool `json:"enabled"`
		} `json:"monitor"`
		Merge map[string]string `json:"merge"`
	} `json:"config"`
	Container struct {
		Image struct {
			Tag string `json:"tag"`
		} `json:"image"`
		Env   map[string]corev1.EnvVar `json:"env"`
		Patch []jsonPatch              `json:"patch"`
	} `json:"container"`
	PodTemplate struct {
		TopologySpreadConstraints map[string]any `json:"topologySpreadConstraints"`
		Patch                     []jsonPatch    `json:"patch"`
	} `json:"podTemplate"`
}

type natsTLS struct {
	Enabled    bool   `json:"enabled"`
	SecretName string `json:"secretName"`
}

type jsonPatch struct {
	Op    string         `json:"op"`
	Path  string         `json:"path"`
	Value map[string]any `json:"value"`
}

// TestNATSHelmValues: the NATS chart's values run a 3-node JetStream cluster
// on persistent volumes with the nats-server version the tests use, TLS on
// clients and routes with the certificate kubernetes/nats makes, and the
// accounts file mounted where the config includes it, with every variable
// it reads in the container's environment.
func TestNATSHelmValues(t *testing.T) {
	raw, err := os.ReadFile("kubernetes/nats-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v natsValues
	if err := yaml.UnmarshalStrict(raw, &v); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	pinned := regexp.MustCompile(`github.com/nats-io/nats-server/v2 v(\S+)`).FindSubmatch(gomod)
	if pinned == nil {
		t.Fatal("no nats-server in go.mod")
	}
	if c := v.Config; !c.Cluster.Enabled || c.Cluster.Replicas != 3 || !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled ||
		!c.JetStream.FileStore.PVC.Enabled || c.JetStream.MemoryStore.Enabled {
		t.Errorf("values %+v", c)
	}
	if !strings.HasPrefix(v.Container.Image.Tag, string(pinned[1])) {
		t.Errorf("nats image %s, go.mod pins %s", v.Container.Image.Tag, pinned[1])
	}
	nats := buildNATS(t)
	for _, tls := range []natsTLS{v.Config.Nats.TLS, v.Config.Cluster.TLS} {
		if !tls.Enabled || !nats.certificates[tls.SecretName] {
			t.Errorf("TLS %+v: not enabled with a certificate kubernetes/nats makes (%v)", tls, nats.certificates)
		}
	}
	// The include resolves (from /etc/nats-config) to the mounted ConfigMap's auth.conf.
	mount, volume := "", ""
	for _, p := range v.Container.Patch {
		if p.Path == "/volumeMounts/-" {
			mount = fmt.Sprint(p.Value["mountPath"])
		}
	}
	for _, p := range v.PodTemplate.Patch {
		if cm, ok := p.Value["configMap"].(map[string]any); ok && p.Path == "/spec/volumes/-" {
			volume = fmt.Sprint(cm["name"])
		}
	}
	if inc := filepath.Join("/etc/nats-config", v.Config.Merge["$include"]); inc != mount+"/auth.conf" || !nats.configMaps[volume] {
		t.Errorf("include %s, mount %s of config map %q (kubernetes/nats makes %v)", inc, mount, volume, nats.configMaps)
	}
	// Its variables ($NAME outside quotes and comments) that it does not
	// define itself come from the environment.
	conf, _ := os.ReadFile("kubernetes/nats/auth.conf")
	bare := regexp.MustCompile(`"[^"]*"|#[^\n]*`).ReplaceAllString(string(conf), "")
	defined := map[string]bool{}
	for _, d := range regexp.MustCompile(`(?m)^([A-Z_]+)\s*[:=]`).FindAllStringSubmatch(bare, -1) {
		defined[d[1]] = true
	}
	for _, ref := range regexp.MustCompile(`\$([A-Z_]+)`).FindAllStringSubmatch(bare, -1) {
		if defined[ref[1]] {
			continue
		}
		if e, ok := v.Container.Env[ref[1]]; !ok || e.ValueFrom == nil {
			t.Errorf("auth.conf reads $%s, which the NATS container's environment does not take from a ConfigMap or Secret", ref[1])
		}
	}
}

// natsObjects is what kubernetes/nats makes.
type natsObjects struct {
	certificates, configMaps map[string]bool // by the Secret or ConfigMap name they fill
	policy                   *networkingv1.NetworkPolicy
}

// buildNATS builds kubernetes/nats: the accounts ConfigMap holds auth.conf
// as it is; the NetworkPolicy admits only stevedore's pods to the client
// port.
func buildNATS(t *testing.T) natsObjects {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join("kubernetes", "nats"))
	if err != nil {
		t.Fatalf("kustomize build nats: %v", err)
	}
	o := natsObjects{certificates: map[string]bool{}, configMaps: map[string]bool{}}
	conf, _ := os.ReadFile("kubernetes/nats/auth.conf")
	for _, r := range res.Resources() {
		data, _ := r.AsYAML()
		switch r.GetKind() {
		case "Certificate":
			var c struct {
				Spec struct {
					SecretName string `json:"secretName"`
				} `json:"spec"`
			}
			_ = yaml.Unmarshal(data, &c)
			o.certificates[c.Spec.SecretName] = true
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict(data, &cm); err != nil {
				t.Fatal(err)
			}
			o.configMaps[cm.Name] = cm.Data["auth.conf"] == string(conf)
		case "NetworkPolicy":
			o.policy = &networkingv1.NetworkPolicy{}
			if err := yaml.UnmarshalStrict(data, o.policy); err != nil {
				t.Fatal(err)
			}
		}
	}
	if o.policy == nil || o.policy.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != "nats" {
		t.Fatalf("no NetworkPolicy for the NATS pods: %+v", o.policy)
	}
	for _, rule := range o.policy.Spec.Ingress {
		for _, port := range rule.Ports {
			if port.Port.IntValue() == 4222 && (len(rule.From) != 1 || rule.From[0].PodSelector == nil ||
				rule.From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "stevedore") {
				t.Errorf("the NATS client port admits %+v, not only stevedore's pods", rule.From)
			}
		}
	}
	return o
}

// TestEverySecretIsMadeOrDocumented: every Secret and ConfigMap a pod of
// the overlays or the NATS chart reads is made by kustomize (the
// overlays, kubernetes/nats) or listed, with where it comes from, in
// deploy/README.md's "Secrets" table.
func TestEverySecretIsMadeOrDocumented(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := func(name string) bool { return strings.Contains(string(readme), "\n| `"+name+"` |") }
	nats := buildNATS(t)
	made := map[string]bool{}
	for name := range nats.configMaps {
		made[name] = true
	}
	for name := range nats.certificates {
		made[name] = true
	}
	need := map[string]string{}
	for _, overlay := range []string{"dev", "prod"} {
		m := build(t, overlay)
		for _, cm := range m.configMaps {
			made[cm.Name] = true
		}
		for _, d := range m.deployments {
			spec := d.Spec.Template.Spec
			for _, v := range spec.Volumes {
				if v.Secret != nil {
					need[v.Secret.SecretName] = d.Name
				}
				if v.ConfigMap != nil {
					need[v.ConfigMap.Name] = d.Name
				}
			}
			for _, c := range append(spec.InitContainers, spec.Containers...) {
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						need[e.ValueFrom.SecretKeyRef.Name] = d.Name
					}
				}
				for _, from := range c.EnvFrom {
					if from.ConfigMapRef != nil {
						need[from.ConfigMapRef.Name] = d.Name
					}
				}
			}
		}
	}
	raw, _ := os.ReadFile("kubernetes/nats-values.yaml")
	var v natsValues
	if err := yaml.UnmarshalStrict(raw, &v); err != nil {
		t.Fatal(err)
	}
	for _, e := range v.Container.Env {
		switch {
		case e.ValueFrom.SecretKeyRef != nil:
			need[e.ValueFrom.SecretKeyRef.Name] = "nats"
		case e.ValueFrom.ConfigMapKeyRef != nil:
			need[e.ValueFrom.ConfigMapKeyRef.Name] = "nats"
		}
	}
	for name, by := range need {
		if !made[name] && !documented(name) {
			t.Errorf("%s reads %s, which nothing makes and deploy/README.md's Secrets table does not list", by, name)
		}
	}
}

// checkPrometheusRule: the PrometheusRule's groups are the rules file's.
func checkPrometheusRule(t *testing.T, m *manifests) {
	t.Helper()
	raw, err := os.ReadFile("prometheus/stevedore-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var file monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(m.rules) != 1 || !reflect.DeepEqual(m.rules[0].Spec, file) {
		t.Errorf("the PrometheusRule is not the rules file's groups: copy deploy/prometheus/stevedore-rules.yml's groups into kubernetes/base/prometheusrule.yaml")
	}
}
