package schema

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// chunksSchema compiles chunks.schema.json, the language-neutral wire
// contract of CHUNKS for downstream consumers.
func chunksSchema(t *testing.T) (*jsonschema.Schema, map[string]any) {
	t.Helper()
	data, err := os.ReadFile("chunks.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("chunks.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("chunks.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	_ = json.Unmarshal(data, &raw)
	return sch, raw
}

func validate(t *testing.T, sch *jsonschema.Schema, data []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return sch.Validate(inst)
}

// The golden CHUNKS messages (and a tombstone in parts) conform to the
// published schema; what breaks the contract does not; and the schema
// names every field the Go types write, so neither drifts from the other.
func TestChunksWireSchema(t *testing.T) {
	sch, raw := chunksSchema(t)
	for _, name := range []string{"chunk", "chunk_document", "chunk_csv", "commit", "tombstone"} {
		data, err := os.ReadFile(filepath.Join("testdata", name+".golden.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, sch, data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	parts := (&Tombstone{V: 1, Tombstone: true, Org: "org_1", Collection: "c", Bucket: "bkt", Key: "k", ChunkIDs: make([]string, TombstoneMaxIDs+1), Reason: "deleted"}).Split()
	for _, p := range parts {
		data, _ := Encode(p)
		if err := validate(t, sch, data); err != nil {
			t.Errorf("tombstone part %d: %v", p.Part, err)
		}
	}
	chunk, _ := os.ReadFile(filepath.Join("testdata", "chunk.golden.json"))
	for name, bad := range map[string]string{
		"no chunk_id":    strings.Replace(string(chunk), `"chunk_id":`, `"chunk_idx":`, 1),
		"unknown field":  strings.Replace(string(chunk), `{"v":1,`, `{"v":1,"surprise":1,`, 1),
		"commit and id":  strings.Replace(string(chunk), `{"v":1,`, `{"v":1,"commit":true,`, 1),
		"negative index": regexp.MustCompile(`"index":\d+`).ReplaceAllString(string(chunk), `"index":-1`),
		"other version":  strings.Replace(string(chunk), `{"v":1,`, `{"v":2,`, 1),
	} {
		if err := validate(t, sch, []byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	defs := raw["$defs"].(map[string]any)
	for def, typ := range map[string]reflect.Type{"chunk": reflect.TypeFor[Chunk](), "commit": reflect.TypeFor[Commit](), "tombstone": reflect.TypeFor[Tombstone]()} {
		props := defs[def].(map[string]any)["properties"].(map[string]any)
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if _, ok := props[name]; !ok {
				t.Errorf("%s.%s (json %q) is not in chunks.schema.json's %s", typ.Name(), typ.Field(i).Name, name, def)
			}
		}
		if len(props) != typ.NumField() {
			t.Errorf("%s: the schema has %d properties, the type %d fields", def, len(props), typ.NumField())
		}
	}
}
