package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kubernetesVersion is the Kubernetes release whose OpenAPI document the
// manifests are validated against (the version of k8s.io/api in go.mod).
const kubernetesVersion = "v1.37.2"

// kubernetesSchemas compiles the Kubernetes API's own OpenAPI document
// (api/openapi-spec/swagger.json of the k8s.io/kubernetes module, fetched
// through the Go module proxy into the module cache) into one JSON schema
// per kind, strict as kubeconform's -strict: an object's unknown fields are
// errors; int-or-string and quantity fields take either form.
func kubernetesSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", "k8s.io/kubernetes@"+kubernetesVersion)
	cmd.Dir = t.TempDir() // outside our module: go.mod is not touched
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download k8s.io/kubernetes@%s: %v\n%s", kubernetesVersion, err, out)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(mod.Dir, "api", "openapi-spec", "swagger.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Definitions map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{} // apiVersion/kind → definition
	for name, d := range doc.Definitions {
		def := d.(map[string]any)
		if name == "io.k8s.apimachinery.pkg.api.resource.Quantity" { // "1" or 1, "512Mi"
			def["format"] = "quantity"
		}
		strict(def)
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk := g.(map[string]any)
			version := gvk["version"].(string)
			if group := gvk["group"].(string); group != "" {
				version = group + "/" + version
			}
			kinds[version+"/"+gvk["kind"].(string)] = name
		}
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("kubernetes.json", map[string]any{"definitions": doc.Definitions}); err != nil {
		t.Fatal(err)
	}
	schemas := map[string]*jsonschema.Schema{}
	for kind, name := range kinds {
		s, err := c.Compile("kubernetes.json#/definitions/" + name)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		schemas[kind] = s
	}
	return schemas
}

// strict makes schema (and every schema in it) refuse unknown fields, and
// lets int-or-string and quantity fields be numbers, as the API server does.
func strict(schema map[string]any) {
	if f, _ := schema["format"].(string); f == "int-or-string" || f == "quantity" {
		delete(schema, "type")
		delete(schema, "format")
		schema["oneOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}
	}
	if _, ok := schema["properties"]; ok {
		if _, set := schema["additionalProperties"]; !set {
			schema["additionalProperties"] = false
		}
	}
	if props, ok := schema["properties"].(map[string]any); ok {
		for _, p := range props {
			if m, ok := p.(map[string]any); ok {
				strict(m)
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties"} {
		if m, ok := schema[key].(map[string]any); ok {
			strict(m)
		}
	}
}

// TestManifestsMatchKubernetesSchemas validates every object of the two
// overlays and of kubernetes/nats whose kind Kubernetes itself defines
// against the Kubernetes API's OpenAPI schema, strictly (kubeconform
// -strict's check, without its network): a misspelt or misplaced field, a
// wrong type or a missing required field fails. Custom resources (KEDA,
// the Prometheus Operator, cert-manager) are decoded strictly into their
// projects' Go types by the other tests.
func TestManifestsMatchKubernetesSchemas(t *testing.T) {
	schemas := kubernetesSchemas(t)
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	checked, custom := 0, 0
	for _, dir := range []string{"kubernetes/overlays/dev", "kubernetes/overlays/prod", "kubernetes/nats"} {
		res, err := k.Run(filesys.MakeFsOnDisk(), dir)
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		for _, r := range res.Resources() {
			where := dir + ": " + r.GetKind() + "/" + r.GetName()
			s, ok := schemas[r.GetApiVersion()+"/"+r.GetKind()]
			if !ok {
				group, _, _ := strings.Cut(r.GetApiVersion(), "/")
				if builtin := !strings.Contains(group, ".") || strings.HasSuffix(group, ".k8s.io"); builtin {
					t.Errorf("%s: Kubernetes %s has no kind %s", where, kubernetesVersion, r.GetApiVersion()+"/"+r.GetKind())
				}
				custom++
				continue
			}
			y, err := r.AsYAML()
			if err != nil {
				t.Fatal(err)
			}
			j, err := yaml.YAMLToJSON(y)
			if err != nil {
				t.Fatal(err)
			}
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(v); err != nil {
				t.Errorf("%s does not match Kubernetes %s's schema: %v", where, kubernetesVersion, err)
			}
			checked++
		}
	}
	if checked < 15 {
		t.Fatalf("only %d objects checked", checked)
	}
	// The check itself: a misspelt field, a missing required field and a
	// wrong type are caught; a number where a quantity may be one is not.
	deployment := schemas["apps/v1/Deployment"]
	for _, c := range []struct {
		container string
		valid     bool
	}{
		{`{"name": "w", "image": "i", "resources": {"limits": {"memory": "1Gi", "cpu": 1}}}`, true},
		{`{"name": "w", "image": "i", "imagePullPolicyy": "Always"}`, false},
		{`{"image": "i"}`, false},
		{`{"name": "w", "image": "i", "ports": [{"containerPort": "http"}]}`, false},
	} {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(`{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
			"spec": {"selector": {}, "template": {"spec": {"containers": [` + c.container + `]}}}}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := deployment.Validate(v); (err == nil) != c.valid {
			t.Errorf("container %s: valid %v, want %v (%v)", c.container, err == nil, c.valid, err)
		}
	}
	t.Logf("%d objects valid against Kubernetes %s's OpenAPI schemas (strict); %d custom resources left to their Go types", checked, kubernetesVersion, custom)
}
