package collections

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/schema/schedules"
)

// Eraser starts erase jobs (schema.JobKind.Erases): a document delete, a
// wipe of a collection's documents, a collection delete. Each is a job
// record (GET /v2/jobs/{id}) and one message on the org's sweeps subject,
// which the worker's sweep handler runs (worker/sweep, erase.go). The API
// and the CLI (offboarding) start them alike.
type Eraser struct {
	JS        jetstream.JetStream
	Store     *Store
	Jobs      *jobs.Store
	Schedules *schedules.Store
	Registry  *registry.Registry
}

// start records job and publishes it (jobs.Store.SubmitSweeper).
func (e *Eraser) start(ctx context.Context, job *schema.Job) (*schema.JobStatus, error) {
	return e.Jobs.SubmitSweeper(ctx, job, schema.EraseMsgID(job.JobID, 0))
}

func (e *Eraser) job(org, collection string, kind schema.JobKind) *schema.Job {
	return &schema.Job{JobID: jobs.NewID(), Org: org, Collection: collection, Kind: kind, CreatedAt: e.Store.now().UTC()}
}

// DeleteDocument starts the erase of one document of org's collection
// (ErrNotFound: the collection holds no such document).
func (e *Eraser) DeleteDocument(ctx context.Context, org, collection, documentID string) (*schema.JobStatus, error) {
	if !schema.ValidID(collection) || !schema.ValidDocumentID(documentID) {
		return nil, ErrNotFound
	}
	if _, err := e.Store.objects.Get(ctx, schema.ObjectKeyPrefix(org, collection)+documentID); errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, err
	}
	job := e.job(org, collection, schema.JobDeleteDocument)
	job.Document = documentID
	return e.start(ctx, job)
}

// Wipe starts the erase of every document of org's collection; with
// integrationID, only of those read with that integration. The collection
// stays, and may be indexed into meanwhile. (It needs no record: documents
// of collections from before records existed are wiped alike.)
func (e *Eraser) Wipe(ctx context.Context, org, collection, integrationID string) (*schema.JobStatus, error) {
	job := e.job(org, collection, schema.JobWipe)
	job.IntegrationID = integrationID
	return e.start(ctx, job)
}

// DeleteCollection starts the delete of org's collection: it is marked
// deleting (new index jobs are refused, its tasks skipped), its routes and
// schedule are removed, and the delete_collection job erases its documents
// and then its record. Asked again while that runs, it returns the same
// job (completing a start a crash interrupted); a delete whose job failed
// is started anew. started reports whether this call started it.
func (e *Eraser) DeleteCollection(ctx context.Context, actor, org, collection string) (st *schema.JobStatus, started bool, err error) {
	job := e.job(org, collection, schema.JobDeleteCollection)
	c, marked, err := e.Store.MarkDeleting(ctx, org, collection, job.JobID, func(running string) bool {
		prev, _, err := e.Jobs.Get(ctx, org, running)
		return err == nil && prev.Status == schema.JobStatusFailed
	})
	if err != nil {
		return nil, false, err
	}
	if !marked {
		job.JobID, job.CreatedAt = c.DeleteJob, c.UpdatedAt
		if prev, _, err := e.Jobs.Get(ctx, org, c.DeleteJob); err == nil {
			job.CreatedAt = prev.CreatedAt
		}
	}
	if err := e.detach(ctx, actor, org, collection); err != nil {
		return nil, false, err
	}
	st, err = e.start(ctx, job)
	if err != nil {
		return nil, false, err
	}
	if marked {
		e.Registry.Audit(ctx, org, actor, "collection.delete", "started", collection+" job "+job.JobID)
	}
	return st, marked, nil
}

// detach removes the collection's routes and schedule: no notification
// or tick starts new work in it.
func (e *Eraser) detach(ctx context.Context, actor, org, collection string) error {
	routes, err := e.Registry.Routes(ctx)
	if err != nil {
		return err
	}
	for _, rt := range routes {
		if rt.Org != org || rt.Collection != collection {
			continue
		}
		if err := e.Registry.DeleteRoute(ctx, actor, org, rt.ID); err != nil && !errors.Is(err, registry.ErrNotFound) {
			return fmt.Errorf("remove route %s: %w", rt.ID, err)
		}
	}
	if err := e.Schedules.Clear(ctx, org, collection); err != nil && !errors.Is(err, schedules.ErrNotFound) {
		return fmt.Errorf("clear the schedule: %w", err)
	}
	return nil
}

// Offboard deletes every collection of org (offboarding with its data) and
// returns the delete jobs.
func (e *Eraser) Offboard(ctx context.Context, actor, org string) ([]*schema.JobStatus, error) {
	list, err := e.Store.List(ctx, org)
	if err != nil {
		return nil, err
	}
	out := make([]*schema.JobStatus, 0, len(list))
	for _, c := range list {
		st, _, err := e.DeleteCollection(ctx, actor, org, c.Name)
		if err != nil {
			return out, fmt.Errorf("delete collection %s: %w", c.Name, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// EraseIntegration wipes, in each of org's collections, the documents read
// with integration id (an integration revoked with its data), and returns
// the wipe jobs.
func (e *Eraser) EraseIntegration(ctx context.Context, org, id string) ([]*schema.JobStatus, error) {
	list, err := e.Store.List(ctx, org)
	if err != nil {
		return nil, err
	}
	out := make([]*schema.JobStatus, 0, len(list))
	for _, c := range list {
		if c.Status == StatusDeleting {
			continue // its delete erases everything
		}
		st, err := e.Wipe(ctx, org, c.Name, id)
		if err != nil {
			return out, fmt.Errorf("wipe collection %s: %w", c.Name, err)
		}
		out = append(out, st)
	}
	return out, nil
}
