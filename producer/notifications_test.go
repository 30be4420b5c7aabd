package producer

import (
	"encoding/json"
	"strings"
	"testing"
)

// Notifications over the API: a queue attached (what to paste comes back),
// a route with its settings and the bucket's event configuration, health
// shown, the queue detached; refusals are precise.
func TestNotificationsOverTheAPI(t *testing.T) {
	f := setup(t)
	const url = "https://sqs.eu-west-1.amazonaws.com/123456789012/acme-notifications"
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"not a queue", `{"queue_url":"https://example.com/nope"}`, 400, "invalid_queue_url"},
		{"plain http", `{"queue_url":"http://sqs.eu-west-1.amazonaws.com/123456789012/q"}`, 400, "invalid_queue_url"},
		{"unknown integration", `{"queue_url":"` + url + `","integration_id":"int_nope"}`, 404, "integration_not_found"},
	} {
		if code, out := f.do(t, "POST", "/v2/notifications/queues", tc.body, nil); code != tc.status || errCode(out) != tc.code {
			t.Errorf("%s: %d %v", tc.name, code, out)
		}
	}
	code, q := f.do(t, "POST", "/v2/notifications/queues", `{"queue_url":"`+url+`"}`, nil)
	paste, _ := q["paste"].(map[string]any)
	if code != 201 || q["queue_arn"] != "arn:aws:sqs:eu-west-1:123456789012:acme-notifications" || paste["queue_policy"] == nil || paste["role_policy_statement"] == nil {
		t.Fatalf("attach: %d %v", code, q)
	}
	if code, out := f.do(t, "POST", "/v2/notifications/queues", `{"queue_url":"`+url+`"}`, nil); code != 409 || errCode(out) != "queue_exists" {
		t.Fatalf("attach again: %d %v", code, out)
	}
	code, rt := f.do(t, "POST", "/v2/collections/docs/routes", `{"bucket_name":"acme-docs","prefix":"incoming/","custom_metadata":{"team":"legal"},"processing_type":"advanced"}`, nil)
	if code != 201 || !strings.Contains(jsonOf(t, rt["s3_event_configuration"]), "arn:aws:sqs:eu-west-1:123456789012:acme-notifications") ||
		!strings.Contains(jsonOf(t, rt["s3_event_configuration"]), `"incoming/"`) || jsonOf(t, rt["custom_metadata"]) != `{"team":"legal"}` {
		t.Fatalf("route: %d %v", code, rt)
	}
	if code, out := f.do(t, "POST", "/v2/collections/docs/routes", `{"bucket_name":"acme-docs","prefix":"incoming/"}`, nil); code != 409 || errCode(out) != "route_exists" {
		t.Fatalf("the same route again: %d %v", code, out)
	}
	if code, out := f.do(t, "POST", "/v2/collections/docs/routes", `{"bucket_name":"acme-docs","custom_metadata":[1]}`, nil); code != 400 || errCode(out) != "invalid_custom_metadata" {
		t.Fatalf("metadata not an object: %d %v", code, out)
	}
	if code, out := f.do(t, "GET", "/v2/collections/docs/routes", "", nil); code != 200 || len(out["routes"].([]any)) != 1 {
		t.Fatalf("routes: %d %v", code, out)
	}
	id := q["id"].(string)
	if code, out := f.do(t, "GET", "/v2/notifications/queues/"+id, "", nil); code != 200 || out["routes"] != 1.0 {
		t.Fatalf("queue: %d %v", code, out)
	}
	if code, out := f.do(t, "GET", "/v2/notifications/queues", "", nil); code != 200 || len(out["queues"].([]any)) != 1 {
		t.Fatalf("queues: %d %v", code, out)
	}
	if code, _ := f.do(t, "DELETE", "/v2/collections/docs/routes/"+rt["id"].(string), "", nil); code != 204 {
		t.Fatalf("delete route: %d", code)
	}
	if code, _ := f.do(t, "DELETE", "/v2/notifications/queues/"+id, "", nil); code != 204 {
		t.Fatalf("detach: %d", code)
	}
	if code, out := f.do(t, "GET", "/v2/notifications/queues/"+id, "", nil); code != 404 || errCode(out) != "queue_not_found" {
		t.Fatalf("detached queue: %d %v", code, out)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
