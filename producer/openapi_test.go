package producer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/stevedore-dev/stevedore/schema"
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

// Every operation has an operationId, unique and camelCase: generated
// clients get readable method names (listJobs, not GetV2Jobs).
func TestOpenAPIOperationIDs(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(schema.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	camel := regexp.MustCompile(`^[a-z][A-Za-z0-9]+$`)
	for path, ops := range doc.Paths {
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
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Headers map[string]any `json:"headers"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(schema.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	for path, ops := range doc.Paths {
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
