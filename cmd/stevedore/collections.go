package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/schema/schedules"
)

// eraser opens what starting erase jobs needs.
func eraser(ctx context.Context, r *registry.Registry) (*collections.Eraser, error) {
	js := r.JetStream()
	colls, err := collections.Open(ctx, js, nil)
	if err != nil {
		return nil, err
	}
	j, err := jobs.Open(ctx, js, nil)
	if err != nil {
		return nil, err
	}
	sc, err := schedules.Open(ctx, js, nil)
	if err != nil {
		return nil, err
	}
	return &collections.Eraser{JS: js, Store: colls, Jobs: j, Schedules: sc, Registry: r}, nil
}

// ensureCollection makes org's collection exist (a route or schedule that
// names it creates it), unless it is being deleted.
func ensureCollection(ctx context.Context, r *registry.Registry, org, name string) error {
	if _, err := r.Org(ctx, org); err != nil {
		return err
	}
	colls, err := collections.Open(ctx, r.JetStream(), nil)
	if err != nil {
		return err
	}
	if _, _, err := colls.Ensure(ctx, org, name); err != nil {
		return fmt.Errorf("collection %s: %w", name, err)
	}
	return nil
}

// collectionCommand is an operator command on one of an org's
// collections: --org and --collection (and define's flags), then act with
// the stores (e).
func collectionCommand(ctx context.Context, name string, args []string, define func(*flags),
	act func(e *collections.Eraser, org, collection string) (map[string]any, string, error)) error {
	var org, coll *string
	return operatorCommand(ctx, name, args, func(f *flags) {
		org = f.Need("org", "organization ID")
		coll = f.Need("collection", "collection")
		if define != nil {
			define(f)
		}
	}, func(r *registry.Registry) (map[string]any, string, error) {
		e, err := eraser(ctx, r)
		if err != nil {
			return nil, "", err
		}
		return act(e, *org, *coll)
	})
}

// notFound makes the store's not-found errors name what was asked for.
func notFound(err error, what string) error {
	if errors.Is(err, collections.ErrNotFound) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return err
}

func runCollection(ctx context.Context, args []string) error {
	return subcommands("collection", args, map[string]func([]string) error{
		"list":   func(args []string) error { return collectionList(ctx, args) },
		"show":   func(args []string) error { return collectionShow(ctx, args) },
		"create": func(args []string) error { return collectionCreate(ctx, args) },
		"delete": func(args []string) error { return collectionDelete(ctx, args) },
	}, "list --org ID | show --org ID --collection C | create --org ID --collection C [--processing-type T] [--encoding E] [--description D] | delete --org ID --collection C")
}

func collectionLine(c *collections.Collection, s *collections.Stats) string {
	return fmt.Sprintf("%-24s %-9s %6d documents (%d indexed, %d skipped)  %8d chunks  %10d tokens  created %s\n", c.Name, c.Status, s.Documents, s.Indexed,
		s.Skipped, s.Chunks, s.Tokens, c.CreatedAt.Format(time.RFC3339))
}

// collectionList is `collection list`: the org's collections with what
// they hold.
func collectionList(ctx context.Context, args []string) error {
	var org *string
	return operatorCommand(ctx, "collection list", args, func(f *flags) {
		org = f.Need("org", "organization ID")
	}, func(r *registry.Registry) (map[string]any, string, error) {
		e, err := eraser(ctx, r)
		if err != nil {
			return nil, "", err
		}
		list, err := e.Store.List(ctx, *org)
		if err != nil {
			return nil, "", err
		}
		var b strings.Builder
		views := make([]map[string]any, 0, len(list))
		for _, c := range list {
			s, err := e.Store.Stats(ctx, c.Org, c.Name)
			if err != nil {
				return nil, "", err
			}
			views = append(views, map[string]any{"collection": c, "stats": s})
			b.WriteString(collectionLine(c, s))
		}
		return map[string]any{"collections": views}, b.String(), nil
	})
}

// collectionShow is `collection show`.
func collectionShow(ctx context.Context, args []string) error {
	return collectionCommand(ctx, "collection show", args, nil, func(e *collections.Eraser, org, name string) (map[string]any, string, error) {
		c, _, err := e.Store.Get(ctx, org, name)
		if err != nil {
			return nil, "", notFound(err, "collection "+name)
		}
		s, err := e.Store.Stats(ctx, c.Org, c.Name)
		if err != nil {
			return nil, "", err
		}
		human := collectionLine(c, s) + fmt.Sprintf("  id %s", c.ID)
		if c.DeleteJob != "" {
			human += "; being deleted by job " + c.DeleteJob
		}
		return map[string]any{"collection": c, "stats": s}, human + "\n", nil
	})
}

// collectionCreate is `collection create`: creates the collection, or
// replaces its settings.
func collectionCreate(ctx context.Context, args []string) error {
	var processing, encoding, description *string
	return collectionCommand(ctx, "collection create", args, func(f *flags) {
		processing = f.FlagSet.String("processing-type", "", "what index jobs default to: basic or advanced")
		encoding = f.FlagSet.String("encoding", "", "what index jobs default to: cl100k_base or o200k_base")
		description = f.FlagSet.String("description", "", "a description")
	}, func(e *collections.Eraser, org, name string) (map[string]any, string, error) {
		if _, err := e.Registry.Org(ctx, org); err != nil {
			return nil, "", err
		}
		if !schema.ValidProcessingType(*processing) || !schema.ValidEncoding(*encoding) {
			return nil, "", usageError(errors.New("collection create: --processing-type is basic or advanced, --encoding cl100k_base or o200k_base"))
		}
		c, created, err := e.Store.Put(ctx, org, name, collections.Settings{Description: *description, ReadSettings: schema.ReadSettings{ProcessingType: *processing, Encoding: *encoding}})
		if err != nil {
			return nil, "", err
		}
		verb := "updated"
		if created {
			verb = "created"
		}
		return map[string]any{"collection": c, "created": created}, fmt.Sprintf("Collection %s %s (%s)\n", c.Name, verb, c.ID), nil
	})
}

// collectionDelete is `collection delete`: starts the delete_collection job.
func collectionDelete(ctx context.Context, args []string) error {
	return collectionCommand(ctx, "collection delete", args, nil, func(e *collections.Eraser, org, name string) (map[string]any, string, error) {
		st, started, err := e.DeleteCollection(ctx, cliActor, org, name)
		if err != nil {
			return nil, "", notFound(err, "collection "+name)
		}
		verb := "started"
		if !started {
			verb = "already running"
		}
		return map[string]any{"job_id": st.JobID, "started": started}, fmt.Sprintf("Deleting collection %s: job %s %s; follow it with: stevedore job show --org %s --id %s --wait\n",
			name, st.JobID, verb, org, st.JobID), nil
	})
}

func runDocument(ctx context.Context, args []string) error {
	return subcommands("document", args, map[string]func([]string) error{
		"list":   func(args []string) error { return documentList(ctx, args) },
		"show":   func(args []string) error { return documentShow(ctx, args) },
		"delete": func(args []string) error { return documentDelete(ctx, args) },
	}, "list --org ID --collection C [--status S] [--prefix P] [--limit N] [--offset N] | show --org ID --collection C --id DOC [--chunks] | delete --org ID --collection C --id DOC")
}

func documentLine(v *collections.DocumentView) string {
	reason := ""
	if v.Reason != "" {
		reason = "  (" + v.Reason + ")"
	}
	return fmt.Sprintf("%s  %-8s %5d chunks  %s%s\n", v.DocumentID, v.Status, v.ChunkCount, v.Metadata.URI, reason)
}

// documentList is `document list`.
func documentList(ctx context.Context, args []string) error {
	var status, prefix *string
	var limit, offset *int
	return collectionCommand(ctx, "document list", args, func(f *flags) {
		status = f.FlagSet.String("status", "", "only indexed, skipped, failed or deleting documents")
		prefix = f.FlagSet.String("prefix", "", "only keys that start with it")
		limit = f.FlagSet.Int("limit", 50, "documents per page (1-1000)")
		offset = f.FlagSet.Int("offset", 0, "documents to skip, in (bucket, key) order")
	}, func(e *collections.Eraser, org, name string) (map[string]any, string, error) {
		switch {
		case *limit < 1 || *limit > 1000 || *offset < 0:
			return nil, "", usageError(errors.New("document list: --limit is 1-1000, --offset not negative"))
		case *status != "" && !collections.ValidDocStatus(*status):
			return nil, "", usageError(fmt.Errorf("document list: --status %q: indexed, skipped, failed or deleting", *status))
		}
		if _, _, err := e.Store.Get(ctx, org, name); err != nil {
			return nil, "", notFound(err, "collection "+name)
		}
		docs, total, err := e.Store.Documents(ctx, org, name, collections.DocFilter{Status: *status, Prefix: *prefix}, *limit, *offset)
		if err != nil {
			return nil, "", err
		}
		var b strings.Builder
		views := make([]*collections.DocumentView, 0, len(docs))
		for _, st := range docs {
			v := collections.View(name, st)
			views = append(views, v)
			b.WriteString(documentLine(v))
		}
		fmt.Fprintf(&b, "%d of %d documents from %d\n", len(docs), total, *offset)
		return map[string]any{"documents": views, "total_count": total}, b.String(), nil
	})
}

// documentShow is `document show`: the document and, with --chunks, its
// visible chunks.
func documentShow(ctx context.Context, args []string) error {
	var id *string
	var chunks *bool
	return collectionCommand(ctx, "document show", args, func(f *flags) {
		id = f.Need("id", "document ID")
		chunks = f.FlagSet.Bool("chunks", false, "also its visible chunks, read from CHUNKS")
	}, func(e *collections.Eraser, org, name string) (map[string]any, string, error) {
		st, err := e.Store.Document(ctx, org, name, *id)
		if err != nil {
			return nil, "", notFound(err, "document "+*id+" of collection "+name)
		}
		v := collections.View(name, st)
		out := map[string]any{"document": v}
		human := documentLine(v)
		if *chunks {
			list, unavailable, err := collections.Chunks(ctx, e.JS, org, name, st, 0, st.Chunks)
			if err != nil {
				return nil, "", err
			}
			views := make([]collections.ChunkView, 0, len(list))
			for _, ch := range list {
				views = append(views, collections.ChunkViewOf(ch))
				human += fmt.Sprintf("--- chunk %d (%d tokens)\n%s\n", ch.Index, ch.TokenCount, ch.Text)
			}
			out["chunks"], out["chunks_unavailable"] = views, unavailable
			if unavailable != "" {
				human += "chunks unavailable: " + unavailable + "\n"
			}
		}
		return out, human, nil
	})
}

// documentDelete is `document delete`: starts the delete_document job.
func documentDelete(ctx context.Context, args []string) error {
	var id *string
	return collectionCommand(ctx, "document delete", args, func(f *flags) {
		id = f.Need("id", "document ID")
	}, func(e *collections.Eraser, org, name string) (map[string]any, string, error) {
		st, err := e.DeleteDocument(ctx, org, name, *id)
		if err != nil {
			return nil, "", notFound(err, "document "+*id+" of collection "+name)
		}
		e.Registry.Audit(ctx, org, cliActor, "document.delete", "started", name+"/"+*id+" job "+st.JobID)
		return map[string]any{"job_id": st.JobID}, fmt.Sprintf("Deleting document %s: job %s\n", *id, st.JobID), nil
	})
}

func runChunks(ctx context.Context, args []string) error {
	return subcommands("chunks", args, map[string]func([]string) error{
		"export": func(args []string) error { return chunksExport(ctx, args) },
	}, "export --org ID --collection C")
}

// chunksExport is `chunks export`: the collection's visible chunks, as a
// consumer folding CHUNKS sees them (the commit and tombstone rules), one
// JSON object per line in (bucket, key, index) order.
func chunksExport(ctx context.Context, args []string) error {
	return collectionCommand(ctx, "chunks export", args, nil, func(e *collections.Eraser, org, name string) (map[string]any, string, error) {
		if !schema.ValidID(org) || !schema.ValidID(name) {
			return nil, "", usageError(errors.New("chunks export: --org and --collection are required"))
		}
		view, err := collections.Fold(ctx, e.JS, org, name, true)
		if err != nil {
			return nil, "", err
		}
		chunks := view.VisibleChunks()
		var b strings.Builder
		for _, c := range chunks {
			line, err := json.Marshal(c)
			if err != nil {
				return nil, "", err
			}
			b.Write(line)
			b.WriteByte('\n')
		}
		return map[string]any{"chunks": chunks, "visible": len(chunks), "chunk_messages": view.Chunks, "commits": view.Commits}, b.String(), nil
	})
}

// offboard deletes every collection of org (org disable --delete-data) and
// returns the delete jobs.
func offboard(ctx context.Context, r *registry.Registry, org string) ([]string, error) {
	e, err := eraser(ctx, r)
	if err != nil {
		return nil, err
	}
	sts, err := e.Offboard(ctx, cliActor, org)
	ids := make([]string, 0, len(sts))
	for _, st := range sts {
		ids = append(ids, st.JobID)
	}
	r.Audit(ctx, org, cliActor, "org.offboard", "started", fmt.Sprintf("%d collections deleted with their data", len(ids)))
	return ids, err
}

// eraseIntegration wipes what integration id of org indexed
// (integration revoke --data delete) and returns the wipe jobs.
func eraseIntegration(ctx context.Context, r *registry.Registry, org, id string) ([]string, error) {
	e, err := eraser(ctx, r)
	if err != nil {
		return nil, err
	}
	sts, err := e.EraseIntegration(ctx, org, id)
	ids := make([]string, 0, len(sts))
	for _, st := range sts {
		ids = append(ids, st.JobID)
	}
	return ids, err
}
