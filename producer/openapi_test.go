package producer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// The OpenAPI document is enforced: every request the API tests send
// through serve that the API accepted (2xx) must conform to it, and every
// response must.
var (
	oaOnce      sync.Once
	oaValidator validator.Validator
	oaErr       error
	oaRequests  atomic.Int64
	oaResponses atomic.Int64
)

func openAPI(t testing.TB) validator.Validator {
	t.Helper()
	oaOnce.Do(func() {
		doc, err := libopenapi.NewDocument(schema.OpenAPI)
		if err != nil {
			oaErr = err
			return
		}
		v, errs := validator.NewValidator(doc)
		if len(errs) > 0 {
			oaErr = fmt.Errorf("%v", errs)
			return
		}
		if ok, verrs := v.ValidateDocument(); !ok {
			oaErr = fmt.Errorf("the document is not valid OpenAPI 3.1: %v", verrs[0].Message)
			return
		}
		oaValidator = v
	})
	if oaErr != nil {
		t.Fatal(oaErr)
	}
	return oaValidator
}

// serve runs req through api and validates the exchange against the document.
func serve(t testing.TB, api http.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	v := openAPI(t)
	vreq := req.Clone(req.Context())
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	if vreq.Header.Get("Content-Type") == "" && len(body) > 0 {
		vreq.Header.Set("Content-Type", "application/json")
	}
	if rec.Code/100 == 2 {
		if ok, errs := v.ValidateHttpRequest(vreq); !ok {
			t.Fatalf("%s %s was accepted (%d) but does not conform to the OpenAPI document: %s", req.Method, req.URL, rec.Code, describe(errs))
		}
		oaRequests.Add(1)
	}
	resp := rec.Result()
	resp.Body = io.NopCloser(bytes.NewReader(rec.Body.Bytes()))
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	if ok, errs := v.ValidateHttpResponse(vreq, resp); !ok {
		t.Fatalf("the response to %s %s (%d %s) does not conform to the OpenAPI document: %s", req.Method, req.URL, rec.Code, rec.Body, describe(errs))
	}
	oaResponses.Add(1)
	return rec
}

func describe[E interface{ Error() string }](errs []E) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString(e.Error())
		b.WriteString("; ")
	}
	return b.String()
}

func TestMain(m *testing.M) {
	code := m.Run()
	fmt.Printf("OpenAPI validation: %d accepted requests and %d responses checked against schema/openapi.json\n", oaRequests.Load(), oaResponses.Load())
	os.Exit(code)
}

func TestOpenAPIDocumentServed(t *testing.T) {
	f := setup(t)
	rec := serve(t, f.api, httptest.NewRequest("GET", "/v2/openapi.json", nil))
	if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), schema.OpenAPI) || !strings.Contains(rec.Body.String(), `"openapi": "3.1.0"`) {
		t.Fatalf("%d %.100s", rec.Code, rec.Body)
	}
}

// oaOperation is what the tests of the document's shape read of one
// operation.
type oaOperation struct {
	OperationID string `json:"operationId"`
	RequestBody *struct {
		Content map[string]oaMedia `json:"content"`
	} `json:"requestBody"`
	Responses map[string]struct {
		Headers map[string]any     `json:"headers"`
		Content map[string]oaMedia `json:"content"`
	} `json:"responses"`
}

type oaMedia struct {
	Example json.RawMessage `json:"example"`
}

// operations is the document's operations, by path and method.
func operations(t *testing.T) map[string]map[string]oaOperation {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]oaOperation `json:"paths"`
	}
	if err := json.Unmarshal(schema.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Paths
}

// Every operation has an operationId, unique and camelCase: generated
// clients get readable method names (listJobs, not GetV2Jobs).
func TestOpenAPIOperationIDs(t *testing.T) {
	seen := map[string]string{}
	camel := regexp.MustCompile(`^[a-z][A-Za-z0-9]+$`)
	for path, ops := range operations(t) {
		for method, op := range ops {
			where := strings.ToUpper(method) + " " + path
			if !camel.MatchString(op.OperationID) {
				t.Errorf("%s: operationId %q", where, op.OperationID)
			}
			if other, ok := seen[op.OperationID]; ok {
				t.Errorf("%s and %s share operationId %s", where, other, op.OperationID)
			}
			seen[op.OperationID] = where
		}
	}
}

// Every answer declares X-Request-Id, and every 429 and 503 Retry-After: the
// headers the API sends (the middleware's), declared where clients look.
func TestOpenAPIDeclaresHeaders(t *testing.T) {
	for path, ops := range operations(t) {
		for method, op := range ops {
			for code, resp := range op.Responses {
				where := strings.ToUpper(method) + " " + path + " " + code
				if resp.Headers["X-Request-Id"] == nil {
					t.Errorf("%s: no X-Request-Id", where)
				}
				if (code == "429" || code == "503") && resp.Headers["Retry-After"] == nil {
					t.Errorf("%s: no Retry-After", where)
				}
			}
		}
	}
}

// Answers no route serves (404, 405) and the OpenAPI document carry an
// X-Request-Id like every other answer.
func TestEveryAnswerHasARequestID(t *testing.T) {
	f := setup(t)
	for _, req := range []*http.Request{httptest.NewRequest("GET", "/v2/nope", nil), httptest.NewRequest("PATCH", "/v2/jobs", nil),
		httptest.NewRequest("GET", "/v2/openapi.json", nil)} {
		rec := httptest.NewRecorder() // not serve: these paths are not in the document by design
		f.api.ServeHTTP(rec, req)
		if rec.Header().Get("X-Request-Id") == "" {
			t.Errorf("%s %s: %d without X-Request-Id", req.Method, req.URL.Path, rec.Code)
		}
	}
}

// The document passes Redocly CLI's lint (its recommended rules, every
// warning an error; schema/redocly.yaml justifies each rule turned off).
func TestOpenAPILint(t *testing.T) {
	out, err := exec.Command("../scripts/tools.sh", "redocly").Output()
	if err != nil {
		t.Fatal(err)
	}
	redocly := strings.TrimSpace(string(out))
	if _, err := os.Stat(redocly); err != nil {
		t.Fatalf("Redocly CLI is not installed (%v): run scripts/tools.sh build (make test does)", err)
	}
	cmd := exec.Command(redocly, "lint", "--format", "stylish", "--config", "../schema/redocly.yaml", "../schema/openapi.json")
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1")
	if lint, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redocly lint: %v\n%s", err, lint)
	}
}

// examplePath is path with each {parameter} replaced by a value shaped
// like the real ones.
func examplePath(path string) string {
	return strings.NewReplacer("{name}", "contracts", "{job_id}", "job_4be1f0c29a7d63e58f10", "{id}", "int_8d21c0f4a9b3e7d2",
		"{document_id}", "9f86d081884c7d659a2feaa0c55ad015").Replace(path)
}

// Every request body and every JSON response has an example, and each
// example is what the API could send or accept: it validates against its
// operation as a real exchange would.
func TestOpenAPIExamples(t *testing.T) {
	v := openAPI(t)
	n := 0
	for path, ops := range operations(t) {
		for method, op := range ops {
			where := strings.ToUpper(method) + " " + path
			request := func() *http.Request {
				req := httptest.NewRequest(strings.ToUpper(method), "http://stevedore.example"+examplePath(path), nil)
				req.Header.Set("Authorization", "Bearer stv_example")
				req.Header.Set("X-Organization-ID", "org_3f9c2a71d04e8b56")
				if op.RequestBody != nil {
					req.Body = io.NopCloser(bytes.NewReader(op.RequestBody.Content["application/json"].Example))
					req.Header.Set("Content-Type", "application/json")
				}
				return req
			}
			if op.RequestBody != nil {
				if len(op.RequestBody.Content["application/json"].Example) == 0 {
					t.Errorf("%s: the request body has no example", where)
				} else if ok, errs := v.ValidateHttpRequest(request()); !ok {
					t.Errorf("%s: the request example does not validate: %s", where, describe(errs))
				}
			}
			for code, resp := range op.Responses {
				m, ok := resp.Content["application/json"]
				if !ok || path == "/v2/openapi.json" && code == "200" { // the document is its own example
					continue
				}
				if len(m.Example) == 0 {
					t.Errorf("%s %s: no example", where, code)
					continue
				}
				status, _ := strconv.Atoi(code)
				answer := &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"req_9a0c4e1b7d2f"}},
					Body: io.NopCloser(bytes.NewReader(m.Example))}
				if status == 429 || status == 503 {
					answer.Header.Set("Retry-After", "5")
				}
				if ok, errs := v.ValidateHttpResponse(request(), answer); !ok {
					t.Errorf("%s %s: the example does not validate: %s", where, code, describe(errs))
				}
				n++
			}
		}
	}
	t.Logf("%d response examples validated", n)
}

// The error codes the document lists (Error.code's enum) are exactly the
// codes the producer's code can answer with: every apiError literal, every
// badRequest and every registryError (found by reading the source), so
// neither a new code nor a stale one goes unnoticed.
func TestOpenAPIErrorCodes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				Error struct {
					Properties struct {
						Error struct {
							Properties struct {
								Code struct {
									Enum []string `json:"enum"`
								} `json:"code"`
							} `json:"properties"`
						} `json:"error"`
					} `json:"properties"`
				} `json:"Error"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(schema.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := doc.Components.Schemas.Error.Properties.Error.Properties.Code.Enum
	used := answeredCodes(t)
	slices.Sort(documented)
	if !slices.Equal(documented, used) {
		t.Fatalf("Error.code's enum differs from the codes the producer answers with:\ndocumented %v\nanswered   %v", documented, used)
	}
}

// answeredCodes reads the producer's source for the error codes it can
// answer with, sorted.
func answeredCodes(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]bool{creds.CodeBucketNotAllowed: true}
	literal := func(e ast.Expr) (string, bool) {
		if l, ok := e.(*ast.BasicLit); ok && l.Kind == token.STRING {
			s, err := strconv.Unquote(l.Value)
			return s, err == nil
		}
		return "", false
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "apiError" && len(n.Elts) == 4 {
					if code, ok := literal(n.Elts[1]); ok {
						codes[code] = true
					}
				}
			case *ast.CallExpr:
				id, ok := n.Fun.(*ast.Ident)
				if !ok || len(n.Args) < 2 {
					return true
				}
				switch id.Name {
				case "badRequest":
					if code, ok := literal(n.Args[0]); ok {
						codes[code] = true
					}
				case "registryError": // what + "_not_found" or "_exists"
					if what, ok := literal(n.Args[1]); ok {
						codes[what+"_not_found"], codes[what+"_exists"] = true, true
					}
				}
			}
			return true
		})
	}
	return slices.Sorted(maps.Keys(codes))
}
