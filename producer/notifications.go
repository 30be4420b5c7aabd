package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// Notifications set up over the API: a customer attaches an SQS queue of
// their own account (read through their integration's role), routes
// buckets and prefixes of theirs to collections, and gets back what to
// paste into AWS — the queue's access policy, the statement their role
// needs, and each bucket's event configuration. Bridges pick attached
// queues up without a restart (producer/attached.go).

// queueView is an attached queue as the API shows it: the record, what the
// bridge last saw of it, and what to paste into AWS.
type queueView struct {
	*registry.NotificationQueue
	QueueARN   string                `json:"queue_arn"`
	Health     *registry.QueueHealth `json:"health,omitempty"`
	Paste      map[string]any        `json:"paste"`
	RoutesSeen int                   `json:"routes"`
}

// readJSON reads a small JSON body into v.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body over %d bytes", MaxBodyBytes), "send a smaller body"}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return jsonError(err)
	}
	return nil
}

// registryError maps the registry's refusals to API errors.
func registryError(err error, what string) error {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return &apiError{http.StatusNotFound, what + "_not_found", err.Error(), ""}
	case errors.Is(err, registry.ErrExists):
		return &apiError{http.StatusConflict, what + "_exists", err.Error(), ""}
	case errors.Is(err, registry.ErrNotUsable):
		return &apiError{http.StatusUnprocessableEntity, "integration_not_usable", err.Error(), "attach queues through an active role integration"}
	}
	return err
}

// attachQueue is POST /v2/notifications/queues {queue_url, integration_id}.
func (a *API) attachQueue(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	var req struct {
		QueueURL      string `json:"queue_url"`
		IntegrationID string `json:"integration_id"`
	}
	if err := readJSON(w, r, &req); err != nil {
		return err
	}
	q, err := a.cfg.Registry.AddQueue(r.Context(), "api", org.ID, req.QueueURL, req.IntegrationID)
	switch {
	case errors.Is(err, registry.ErrInvalid):
		return badRequest("invalid_queue_url", err.Error(), "copy the queue's URL from the SQS console")
	case errors.Is(err, registry.ErrNotFound):
		return registryError(err, "integration")
	case err != nil:
		return registryError(err, "queue")
	}
	v, err := a.oneQueueView(r.Context(), q, &registry.QueueHealth{})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// queueView completes a queue for the API: its ARN, health and what to
// paste (the queue policy names the buckets of routes, the org's, or the
// integration's buckets while there are none).
func (a *API) queueView(ctx context.Context, q *registry.NotificationQueue, h *registry.QueueHealth, routes []*registry.Route) (*queueView, error) {
	arn, err := creds.QueueARN(q.URL, "us-east-1")
	if err != nil {
		return nil, err
	}
	in, err := a.cfg.Registry.Integration(ctx, q.Org, q.IntegrationID)
	if err != nil {
		return nil, err
	}
	buckets := bucketsOf(routes)
	if len(buckets) == 0 {
		buckets = in.Buckets
	}
	account := strings.Split(arn, ":")[4]
	return &queueView{NotificationQueue: q, QueueARN: arn, Health: h, RoutesSeen: len(routes), Paste: map[string]any{
		"queue_policy": creds.QueuePolicy(arn, account, buckets),
		"role_policy_statement": map[string]any{"Effect": "Allow", "Resource": arn,
			"Action": []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}},
		"note": "Add role_policy_statement to the role " + in.RoleARN + " and set queue_policy as the queue's access policy; then route buckets: POST /v2/collections/{name}/routes.",
	}}, nil
}

// oneQueueView is queueView of one queue, with the org's routes.
func (a *API) oneQueueView(ctx context.Context, q *registry.NotificationQueue, h *registry.QueueHealth) (*queueView, error) {
	routes, err := a.orgRoutes(ctx, q.Org, "")
	if err != nil {
		return nil, err
	}
	return a.queueView(ctx, q, h, routes)
}

func bucketsOf(routes []*registry.Route) []string {
	var out []string
	for _, rt := range routes {
		if !slices.Contains(out, rt.Bucket) {
			out = append(out, rt.Bucket)
		}
	}
	return out
}

// listQueues is GET /v2/notifications/queues.
func (a *API) listQueues(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	qs, err := a.cfg.Registry.Queues(r.Context(), org.ID)
	if err != nil {
		return err
	}
	routes, err := a.orgRoutes(r.Context(), org.ID, "")
	if err != nil {
		return err
	}
	out, err := each(qs, func(q *registry.NotificationQueue) (*queueView, error) {
		h, err := a.cfg.Registry.QueueHealth(r.Context(), q)
		if err != nil {
			return nil, err
		}
		return a.queueView(r.Context(), q, h, routes)
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"queues": out})
	return nil
}

// each maps list with view, stopping at the first error; never nil.
func each[T, V any](list []T, view func(T) (V, error)) ([]V, error) {
	out := make([]V, 0, len(list))
	for _, x := range list {
		v, err := view(x)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// getQueue is GET /v2/notifications/queues/{id}: the queue and its health.
func (a *API) getQueue(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	q, h, err := a.cfg.Registry.Queue(r.Context(), org.ID, r.PathValue("id"))
	if err != nil {
		return registryError(err, "queue")
	}
	v, err := a.oneQueueView(r.Context(), q, h)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// detachQueue is DELETE /v2/notifications/queues/{id}: bridges stop
// reading it.
func (a *API) detachQueue(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	if err := a.cfg.Registry.RemoveQueue(r.Context(), "api", org.ID, r.PathValue("id")); err != nil {
		return registryError(err, "queue")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// routeRequest is POST /v2/collections/{name}/routes: notifications of
// the bucket (under the prefix) index into the collection, with its
// settings.
type routeRequest struct {
	BucketName     string          `json:"bucket_name"`
	Prefix         string          `json:"prefix"`
	IntegrationID  string          `json:"integration_id"`
	ProcessingType string          `json:"processing_type"`
	Encoding       string          `json:"encoding"`
	CustomMetadata json.RawMessage `json:"custom_metadata"`
}

// routeView is a route and the event configuration to paste on its bucket.
type routeView struct {
	*registry.Route
	S3EventConfiguration map[string]any `json:"s3_event_configuration"`
}

// addRoute is POST /v2/collections/{name}/routes.
func (a *API) addRoute(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	collection := r.PathValue("name")
	var req routeRequest
	if err := readJSON(w, r, &req); err != nil {
		return err
	}
	if len(req.CustomMetadata) > 0 && !strings.HasPrefix(strings.TrimSpace(string(req.CustomMetadata)), "{") {
		return badRequest("invalid_custom_metadata", "custom_metadata must be a JSON object", "")
	}
	if req.Encoding == schema.DefaultEncoding {
		req.Encoding = ""
	}
	if err := a.ensureCollection(r.Context(), org.ID, collection); err != nil {
		return err
	}
	rt, err := a.cfg.Registry.AddRoute(r.Context(), "api", registry.Route{Org: org.ID, Collection: collection, Bucket: req.BucketName, Prefix: req.Prefix,
		IntegrationID: req.IntegrationID, ProcessingType: req.ProcessingType, Encoding: req.Encoding, CustomMetadata: req.CustomMetadata})
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrExists) {
			return registryError(err, "route")
		}
		return badRequest("invalid_route", err.Error(), "")
	}
	v, err := a.routeView(r.Context(), rt)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// routeView completes a route with the S3 event configuration of its
// bucket: one queue configuration per queue the org attached.
func (a *API) routeView(ctx context.Context, rt *registry.Route) (*routeView, error) {
	qs, err := a.cfg.Registry.Queues(ctx, rt.Org)
	if err != nil {
		return nil, err
	}
	configs := []map[string]any{}
	for _, q := range qs {
		arn, err := creds.QueueARN(q.URL, "us-east-1")
		if err != nil {
			continue
		}
		c := map[string]any{"Id": "stevedore-" + rt.ID, "QueueArn": arn, "Events": []string{"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}}
		if rt.Prefix != "" {
			c["Filter"] = map[string]any{"Key": map[string]any{"FilterRules": []map[string]string{{"Name": "prefix", "Value": rt.Prefix}}}}
		}
		configs = append(configs, c)
	}
	return &routeView{Route: rt, S3EventConfiguration: map[string]any{"QueueConfigurations": configs}}, nil
}

// orgRoutes is the org's routes (of one collection, when given).
func (a *API) orgRoutes(ctx context.Context, org, collection string) ([]*registry.Route, error) {
	all, err := a.cfg.Registry.Routes(ctx)
	if err != nil {
		return nil, err
	}
	var out []*registry.Route
	for _, rt := range all {
		if rt.Org == org && (collection == "" || rt.Collection == collection) {
			out = append(out, rt)
		}
	}
	return out, nil
}

// listRoutes is GET /v2/collections/{name}/routes.
func (a *API) listRoutes(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	routes, err := a.orgRoutes(r.Context(), org.ID, r.PathValue("name"))
	if err != nil {
		return err
	}
	out, err := each(routes, func(rt *registry.Route) (*routeView, error) { return a.routeView(r.Context(), rt) })
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"routes": out})
	return nil
}

// deleteRoute is DELETE /v2/collections/{name}/routes/{id}.
func (a *API) deleteRoute(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	routes, err := a.orgRoutes(r.Context(), org.ID, r.PathValue("name"))
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	for _, rt := range routes {
		if rt.ID == id {
			if err := a.cfg.Registry.DeleteRoute(r.Context(), "api", org.ID, id); err != nil {
				return registryError(err, "route")
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
	}
	return &apiError{http.StatusNotFound, "route_not_found", "no route " + id + " of collection " + r.PathValue("name"), ""}
}
