package schema

import (
	"fmt"
	"regexp"
	"strings"
)

// Stream names.
const (
	StreamJobs   = "JOBS"
	StreamTasks  = "TASKS"
	StreamChunks = "CHUNKS"
	StreamEvents = "EVENTS"
	StreamDead   = "DEAD"
	StreamAudit  = "AUDIT"
	// StreamSchedules holds each collection's sync schedule (a JetStream
	// message schedule, schedules.def.<org>.<collection>) and the ticks the
	// server publishes from it (schedules.tick.<org>.<collection>).
	StreamSchedules = "SCHEDULES"
)

// KV bucket names.
const (
	BucketRegistry    = "stevedore_registry"    // orgs, API key hashes, integrations
	BucketJobs        = "stevedore_jobs"        // job status folded from EVENTS
	BucketObjects     = "stevedore_objects"     // per-object index state
	BucketWorkers     = "stevedore_workers"     // live workers' leases (tenant affinity)
	BucketVerdicts    = "stevedore_verdicts"    // roles STS refused for the tenant's reasons, shared by the fleet
	BucketSchedules   = "stevedore_schedules"   // each schedule's definition and its last syncs, as the API shows them
	BucketCollections = "stevedore_collections" // collection records: settings, status (see schema/collections)
)

// Durable consumer names.
const (
	ConsumerPlanner = "planner"       // JOBS → worker plan step: one consumer per org, see PlannerConsumer
	ConsumerIndexer = "indexer"       // TASKS → worker task step: one consumer per org, see IndexerConsumer
	ConsumerSweeper = "sweeper"       // JOBS sweeps → worker sweep step: one consumer per org, see SweeperConsumer
	ConsumerTicker  = "ticker"        // SCHEDULES ticks → a sync job per tick: one consumer per org, see TickerConsumer
	ConsumerTracker = "tracker-batch" // EVENTS → job status folding (pinned, batched)
	// TrackerGroup is the tracker consumer's pinned priority group: one
	// worker of the fleet folds at a time.
	TrackerGroup = "folder"
	// legacyTracker is the one-at-a-time tracker consumer of earlier versions.
	legacyTracker = "tracker"
)

// idRE is the shape of every identifier that becomes a subject token or a KV
// key segment: org IDs, collection names, job and integration IDs.
var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// bucketRE is the set of bucket names S3 sends notifications for: today's
// rules (3–63 of a–z 0–9 . -) and the legacy us-east-1 names created before
// March 2018, which may hold capitals and underscores and be up to 255
// characters long. Such buckets still exist and still notify; refusing their
// names would make their notifications unroutable.
var bucketRE = regexp.MustCompile(`^[A-Za-z0-9._-]{3,255}$`)

// ValidBucket reports whether s is a bucket name S3 may send (see bucketRE).
// The API, integrations and routes all accept exactly this set.
func ValidBucket(s string) bool { return bucketRE.MatchString(s) }

// regionRE is the shape of AWS region names: us-east-1, eu-central-2,
// us-gov-west-1, cn-north-1, us-iso-east-1, us-isob-east-1, ap-southeast-5.
var regionRE = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$`)

// ValidRegion reports whether s is shaped like an AWS region name. A region
// decides which host the SDK dials, so a tenant's free text must never
// become one (an S3 hostname of the tenant's choosing).
func ValidRegion(s string) bool { return regionRE.MatchString(s) }

// ValidID reports whether s may be used as an org ID, collection name, job ID
// or integration ID (1–64 of A–Z a–z 0–9 _ -).
func ValidID(s string) bool { return idRE.MatchString(s) }

// JobSubject is where index jobs for org/collection are published.
func JobSubject(org, collection string) string { return "jobs." + org + "." + collection }

// TaskSubject is where object tasks for org/collection are published.
func TaskSubject(org, collection string) string { return taskPrefix + org + "." + collection }

// taskPrefix begins every TASKS subject.
const taskPrefix = "tasks."

// ChunkSubject is where chunks and tombstones for org/collection are published.
func ChunkSubject(org, collection string) string { return "chunks." + org + "." + collection }

// Subject prefixes of the two kinds of EVENTS messages.
const (
	objectEventPrefix = "events.object."
	jobEventPrefix    = "events.job."
)

// ObjectEventSubject carries per-object outcomes.
func ObjectEventSubject(org, collection string) string {
	return objectEventPrefix + org + "." + collection
}

// JobEventSubject carries job lifecycle events (planned pages, failures).
func JobEventSubject(org, collection string) string { return jobEventPrefix + org + "." + collection }

// AllTasks matches every TASKS subject (tasks.<org>.<collection>).
const AllTasks = "tasks.*.*"

// OrgTasks matches the TASKS subjects of one org.
func OrgTasks(org string) string { return "tasks." + org + ".*" }

// DeadSubject is where a message from stream source that could not be
// processed is copied, with its reason.
func DeadSubject(source string) string { return "dead." + source }

// AuditSubject carries audit records for one organization ("_" for none).
func AuditSubject(org string) string {
	if org == "" {
		org = "_"
	}
	return "audit." + org
}

func mustID(kind, s string) error {
	if !ValidID(s) {
		return fmt.Errorf("%s %q: must be 1-64 characters of A-Z a-z 0-9 _ -", kind, s)
	}
	return nil
}

// PlannerConsumer is the durable JOBS consumer of one org's job pages: as
// for tasks, workers take turns between orgs when planning.
func PlannerConsumer(org string) string { return ConsumerPlanner + "-" + org }

// AllJobs matches every JOBS subject (jobs.<org>.<collection>).
const AllJobs = "jobs.*.*"

// SweepSubject is where the sweep of a sync of org/collection is published
// (in JOBS, beside the job pages; its own consumer per org, SweeperConsumer).
func SweepSubject(org, collection string) string { return "sweeps." + org + "." + collection }

// AllSweeps matches every sweep subject (sweeps.<org>.<collection>).
const AllSweeps = "sweeps.*.*"

// OrgSweeps matches the sweep subjects of one org.
func OrgSweeps(org string) string { return "sweeps." + org + ".*" }

// OrgOfSweepSubject returns the org of a sweep subject.
func OrgOfSweepSubject(subject string) (string, bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != "sweeps" {
		return "", false
	}
	return parts[1], true
}

// SweeperConsumer is the durable consumer of one org's sweeps.
func SweeperConsumer(org string) string { return ConsumerSweeper + "-" + org }

// ScheduleSubject holds the schedule of a collection's syncs.
func ScheduleSubject(org, collection string) string { return "schedules.def." + org + "." + collection }

// TickSubject is where the server publishes a collection's schedule ticks.
func TickSubject(org, collection string) string { return "schedules.tick." + org + "." + collection }

// AllTicks matches every TickSubject.
const AllTicks = "schedules.tick.*.*"

// OrgTicks matches the TickSubjects of one org.
func OrgTicks(org string) string { return "schedules.tick." + org + ".*" }

// OrgOfTickSubject returns the org and collection of a TickSubject, or of
// a ScheduleSubject.
func OrgOfTickSubject(subject string) (org, collection string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0] != "schedules" || (parts[1] != "tick" && parts[1] != "def") {
		return "", "", false
	}
	return parts[2], parts[3], true
}

// TickerConsumer is the durable consumer of one org's schedule ticks.
func TickerConsumer(org string) string { return ConsumerTicker + "-" + org }

// OrgJobs matches the JOBS subjects of one org.
func OrgJobs(org string) string { return "jobs." + org + ".*" }

// OrgOfJobSubject returns the org of a JOBS subject (jobs.<org>.<collection>).
func OrgOfJobSubject(subject string) (string, bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != "jobs" {
		return "", false
	}
	return parts[1], true
}

// IndexerConsumer is the durable TASKS consumer of one org's tasks. Each org
// has its own, so a worker can take turns between tenants: one tenant's
// backlog never stands in front of another's work.
func IndexerConsumer(org string) string { return ConsumerIndexer + "-" + org }

// WakeSubject is where the publisher of an org's tasks (kind "tasks") or
// job pages ("jobs") signals, on core NATS after they are stored, how many
// it published (a decimal count): one small message per batch wakes the
// workers, instead of every worker receiving every message. It is not a
// stream subject; a lost signal costs at most one discovery interval.
func WakeSubject(kind, org string) string { return "wake." + kind + "." + org }

// AllWakes matches every WakeSubject of kind.
func AllWakes(kind string) string { return "wake." + kind + ".*" }

// OrgOfWakeSubject returns the org of a WakeSubject of kind.
func OrgOfWakeSubject(kind, subject string) (string, bool) {
	org, ok := strings.CutPrefix(subject, "wake."+kind+".")
	return org, ok && org != "" && !strings.Contains(org, ".")
}

// OrgOfTaskSubject returns the org of a TASKS subject (tasks.<org>.<collection>).
func OrgOfTaskSubject(subject string) (string, bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != "tasks" {
		return "", false
	}
	return parts[1], true
}
