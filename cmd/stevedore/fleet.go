package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/stevedore-dev/stevedore/producer"
	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/extract"
	"github.com/stevedore-dev/stevedore/worker/sweep"
)

// fleetConfig is what dev, producer and worker share.
type fleetConfig struct {
	natsURL, listen, metricsListen, logLevel, logFormat, sessionPrefix, externalIDPrefix *string
	pprof                                                                                *bool
	principalARN, kekFile, sessionTemplate                                               *string
	s3PathStyle, devEmulatorSTS                                                          *bool
	stsRate, memoryLimitMiB                                                              *int
	sqs                                                                                  *sqsFlags
	chunkTokens, taskConcurrency, planConcurrency, replicas, workers                     *int
	maxObjectMiB, maxDecompressedMiB                                                     *int
	pdfInstances, pdfMaxPages, pdfMemoryMiB                                              *int
	pdfTimeout                                                                           *time.Duration
	ocr                                                                                  ocrFlags
	cacheDir, cacheSeed                                                                  *string
	shutdownGrace, sessionDuration, ackWait                                              *time.Duration
	tenantConcurrency, spillEvery, stealAbove, orgTaskShare                              *int
	sweepMaxShare                                                                        *float64
	sweepTimeout                                                                         *time.Duration
	noAffinity                                                                           *bool
	apiRate, apiBurst, maxQueuedJobs                                                     *int
	updateTopology                                                                       *bool
	nats                                                                                 *natsFlags
	embedded                                                                             *server.Server // dev: its own processes connect in-process
}

func addFleetFlags(f *flags, api bool, workers int) *fleetConfig {
	nats := addNATSFlags(f)
	c := &fleetConfig{nats: nats, natsURL: nats.url,
		metricsListen: f.String("metrics-listen", "127.0.0.1:9090", "address for /healthz, /readyz and /metrics"),
		pprof: f.Bool("pprof", false, "serve Go's profiles at /debug/pprof/ on the metrics listener (CPU, heap, goroutines; block and mutex profiling "+
			"sampled): for diagnosis, keep the listener private"),
		logLevel:  f.String("log-level", "info", "debug, info, warn or error"),
		logFormat: f.String("log-format", "json", "json (one object per line, for log collectors) or text (key=value, for people)"),
		memoryLimitMiB: f.Int("memory-limit-mib", 0, "soft memory limit of the process (Go's GOMEMLIMIT: the garbage collector works harder near it); "+
			"0: GOMEMLIMIT if set, else 90% of the container's (cgroup) memory limit, else none"),
		replicas: f.Int("replicas", 1, "stream and KV replicas (3 in production)"),
		ackWait:  f.Duration("ack-wait", 60*time.Second, "how long a claimed message may go without a heartbeat before it is redelivered"),
		updateTopology: f.Bool("update-topology", false, "rewrite live streams and consumers whose --replicas/--ack-wait differ from this process's "+
			"(without it such a difference is refused at start, so one mis-flagged process cannot change the fleet)"),
		externalIDPrefix: f.String("external-id-prefix", "cap_org_", "prefix of minted ExternalIds"),
		stsRate:          f.Int("sts-rate", 10, "AssumeRole calls per second per process (burst 2x)"),
		kekFile:          f.String("kek-file", "", "file holding the 32-byte key-encryption key for static AWS keys (hex or base64; or env STEVEDORE_KEK); none: static keys refused"),
		s3PathStyle:      f.Bool("s3-path-style", false, "path-style S3 addressing (MinIO)"),
		sessionPrefix:    f.String("session-prefix", creds.SessionPrefixDefault, "RoleSessionName prefix seen in customers' CloudTrail"),
		sessionTemplate: f.String("session-name", creds.SessionTemplateDefault, "RoleSessionName template: {prefix}, {org} (required), {job} (a job ID, events or verify); "+
			"STS's charset, cut to 64 characters (Captain's style: captain-customer-{org})"),
	}
	if api {
		c.listen = f.String("listen", "127.0.0.1:8080", "HTTP API address")
		c.principalARN = f.String("principal-arn", "", "stevedore's own role ARN: the Principal in the trust policies handed to customers")
		c.devEmulatorSTS = f.Bool("dev-emulator-sts", false, "DEVELOPMENT ONLY: verification accepts an STS that ignores ExternalId (MinIO)")
		c.sqs = addSQSFlags(f)
		c.apiRate = f.Int("api-rate", producer.RequestRateDefault, "API requests per second per organization in this process (429 rate_limited past it; burst 2x)")
		c.maxQueuedJobs = f.Int("max-queued-jobs", producer.MaxQueuedJobsDefault, "job pages one organization may have waiting to be planned (429 too_many_jobs past it)")
	}
	if workers >= 0 {
		c.workers = f.Int("workers", workers, "workers in this process")

		c.chunkTokens = f.Int("chunk-tokens", 512, "maximum tokens per chunk")
		c.taskConcurrency = f.Int("task-concurrency", worker.TaskConcurrencyDefault, "tasks processed at once per worker")
		c.tenantConcurrency = f.Int("tenant-concurrency", 0, "one org's tasks in flight per worker at most (0: 3/4 of --task-concurrency)")
		c.planConcurrency = f.Int("plan-concurrency", worker.PlanConcurrencyDefault, "job pages planned at once per worker")
		c.spillEvery = f.Int("spill-every", worker.SpillEveryDefault, "tenant affinity: an org is served by one worker plus one more per this many of its tasks waiting")
		c.stealAbove = f.Int("steal-above", worker.StealAboveDefault, "tenant affinity: a worker with nothing of its own orgs waiting helps orgs with at least this many tasks waiting")
		c.orgTaskShare = f.Int("org-task-share", worker.OrgTaskShareDefault, "an org with this many tasks waiting gets no more job pages planned until they drain (its share of TASKS)")
		c.sweepMaxShare = f.Float64("sweep-max-share", sweep.MaxShareDefault, "a sync's sweep deletes at most this share of the objects held in its scope "+
			"(more is refused, audited and reported on the job, unless the job sets allow_mass_delete); 1: no limit")
		c.sweepTimeout = f.Duration("sweep-timeout", worker.SweepTimeoutDefault, "time cap of one sweep (two passes over the collection's object states and a HEAD per candidate)")
		c.noAffinity = f.Bool("no-affinity", false, "every worker serves every org (no tenant affinity: AssumeRole calls grow with the workers); for measurements")
		c.maxObjectMiB = f.Int("max-object-mib", worker.MaxObjectBytesDefault>>20, "objects larger than this are skipped (too_large); bodies are streamed")
		c.maxDecompressedMiB = f.Int("max-decompressed-mib", worker.MaxDecompressedBytesDefault>>20, "gzip objects decompressing past this are skipped (decompressed_too_large)")
		c.shutdownGrace = f.Duration("shutdown-grace", worker.ShutdownGraceDefault, "time in-flight work may finish after SIGTERM")
		c.pdfInstances = f.Int("pdf-instances", extract.DefaultPDFInstances, "PDFium (WebAssembly) instances per process: PDFs read at once; more wait")
		c.pdfMaxPages = f.Int("pdf-max-pages", extract.DefaultPDFMaxPages, "PDFs with more pages are skipped (too_large)")
		c.pdfTimeout = f.Duration("pdf-timeout", extract.DefaultPDFTimeout, "time cap per PDF; past it the instance is killed and the object skipped (extract_timeout)")
		c.cacheDir, c.pdfMemoryMiB = pdfModuleFlags(f)
		c.cacheSeed = f.String("pdf-cache-seed", "", "a read-only PDFium cache compiled ahead (the container image's: /opt/stevedore/pdfium), copied into --cache-dir where that lacks its files")
		c.ocr = addOCRFlags(f)
		c.sessionDuration = f.Duration("session-duration", time.Hour, "assumed-role session duration (15m-12h; 1h max when our identity is itself a role session)")
	}
	return c
}

func runDev(ctx context.Context, args []string) error {
	f := newFlags("dev")
	data := f.String("data", "./.stevedore", "directory for the embedded NATS JetStream store")
	natsListen := f.String("nats-listen", "127.0.0.1:4222", "address of the embedded NATS server")
	c := addFleetFlags(f, true, 2)
	if err := f.parse(args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err // before the embedded server starts
	}
	log := newLogger(*c.logLevel, *c.logFormat)
	host, portStr, err := net.SplitHostPort(*natsListen)
	if err != nil {
		return fmt.Errorf("--nats-listen: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("--nats-listen: %w", err)
	}
	// The server would only say it "did not start" after a timeout: a port in
	// use is named at once.
	if ln, err := net.Listen("tcp", *natsListen); err != nil {
		return fmt.Errorf("--nats-listen %s: %w", *natsListen, err)
	} else {
		ln.Close()
	}
	srv, err := server.NewServer(&server.Options{Host: host, Port: port, JetStream: true,
		StoreDir: filepath.Join(*data, "jetstream"), NoSigs: true, NoLog: true, ServerName: "stevedore-dev"})
	if err != nil {
		return fmt.Errorf("embedded nats: %w", err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(15 * time.Second) {
		return fmt.Errorf("embedded nats did not start on %s", *natsListen)
	}
	log.Info("embedded NATS JetStream started", "listen", *natsListen, "data", *data)
	*c.natsURL = srv.ClientURL()
	c.embedded = srv
	return runFleet(ctx, c, log)
}

func runProducer(ctx context.Context, args []string) error {
	f := newFlags("producer")
	c := addFleetFlags(f, true, -1)
	if err := f.parse(args); err != nil {
		return err
	}
	return runFleet(ctx, c, newLogger(*c.logLevel, *c.logFormat))
}

func runWorker(ctx context.Context, args []string) error {
	f := newFlags("worker")
	c := addFleetFlags(f, false, 1)
	if err := f.parse(args); err != nil {
		return err
	}
	return runFleet(ctx, c, newLogger(*c.logLevel, *c.logFormat))
}

// redactURL hides the credentials of NATS server URLs (a comma-separated
// list, as nats.Connect takes): user:password@ and token@ become "[redacted]".
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "[unparseable URL redacted]"
			continue
		}
		if u.User != nil {
			u.User = url.User("[redacted]")
			parts[i] = strings.Replace(u.String(), "%5Bredacted%5D", "[redacted]", 1)
		}
	}
	return strings.Join(parts, ",")
}

// natsTarget is where and how to connect to NATS: --nats-url and the
// credentials that should not live in a URL.
type natsTarget struct {
	url string
	// inProcess, in dev, connects to the embedded server without a socket.
	inProcess              nats.InProcessConnProvider
	creds, nkey            string // a .creds file (JWT + nkey seed); an nkey seed file
	tlsCA, tlsCert, tlsKey string
}

// natsFlags are --nats-url and the NATS authentication and TLS flags.
type natsFlags struct{ url, creds, nkey, ca, cert, key *string }

func (n *natsFlags) target() natsTarget {
	return natsTarget{url: *n.url, creds: *n.creds, nkey: *n.nkey, tlsCA: *n.ca, tlsCert: *n.cert, tlsKey: *n.key}
}

// addNATSFlags defines --nats-url and the NATS authentication and TLS flags.
func addNATSFlags(f *flags) *natsFlags {
	u := f.String("nats-url", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated; credentials in it are redacted in logs, but prefer --nats-creds or --nats-nkey")
	creds := f.String("nats-creds", "", "NATS user credentials file (JWT and nkey seed)")
	nkey := f.String("nats-nkey", "", "file holding an NATS nkey seed (SU…)")
	ca := f.String("nats-tls-ca", "", "CA certificate(s) to verify the NATS servers with (PEM)")
	cert := f.String("nats-tls-cert", "", "client certificate for NATS mutual TLS (PEM; with --nats-tls-key)")
	key := f.String("nats-tls-key", "", "client key for NATS mutual TLS (PEM)")
	return &natsFlags{url: u, creds: creds, nkey: nkey, ca: ca, cert: cert, key: key}
}

// options turns the target's credentials and TLS files into NATS options.
func (t natsTarget) options() ([]nats.Option, error) {
	var opts []nats.Option
	if t.creds != "" {
		opts = append(opts, nats.UserCredentials(t.creds))
	}
	if t.nkey != "" {
		o, err := nats.NkeyOptionFromSeed(t.nkey)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey: %w", err)
		}
		opts = append(opts, o)
	}
	if t.tlsCA != "" {
		opts = append(opts, nats.RootCAs(t.tlsCA))
	}
	if (t.tlsCert == "") != (t.tlsKey == "") {
		return nil, errors.New("--nats-tls-cert and --nats-tls-key go together")
	}
	if t.tlsCert != "" {
		opts = append(opts, nats.ClientCert(t.tlsCert, t.tlsKey))
	}
	return opts, nil
}

func connect(ctx context.Context, t natsTarget, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	auth, err := t.options()
	if err != nil {
		return nil, nil, err
	}
	opts := append([]nats.Option{nats.Name("stevedore"), nats.Timeout(5 * time.Second), nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) })}, auth...)
	if t.inProcess != nil {
		opts = append(opts, nats.InProcessServer(t.inProcess))
	}
	nc, err := nats.Connect(t.url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(t.url), err)
	}
	js, err := schema.NewJetStream(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// connectWaiting connects to NATS, waiting for it (with backoff, up to 10
// s between tries, each logged) while it cannot be reached: a fleet
// started before its NATS, or during a NATS restart, comes up when NATS
// does. Errors no wait can fix (credentials that do not parse, a
// certificate without its key, a refused authorization) are returned at
// once, as is ctx's end.
func connectWaiting(ctx context.Context, t natsTarget, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	wait := 500 * time.Millisecond
	for {
		nc, js, err := connect(ctx, t, log)
		if err == nil || !errors.Is(err, nats.ErrNoServers) {
			return nc, js, err
		}
		log.Warn("waiting for NATS", "url", redactURL(t.url), "retry_in", wait.String(), "error", err)
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("NATS at %s not reached before the process was stopped: %w", redactURL(t.url), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// switchHandler serves whichever handler was set last.
type switchHandler struct{ h atomic.Pointer[http.Handler] }

func (s *switchHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *switchHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// waitingMux is the metrics listener before the process is up: alive, not
// ready.
func waitingMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "starting: waiting for NATS", http.StatusServiceUnavailable)
	})
	return mux
}

// target is where the process connects: --nats-url, or in dev the embedded
// server in-process (dev has pointed --nats-url at it too).
func (c *fleetConfig) target() natsTarget {
	t := c.nats.target()
	if c.embedded != nil { // never a nil *server.Server in the interface: that is not "none"
		t.inProcess = c.embedded
	}
	return t
}

// defaultCacheDir is stevedore's directory in the user's cache directory
// ($XDG_CACHE_HOME or ~/.cache), or "" when there is none.
func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "stevedore", "wazero")
}

// pdfModuleFlags are the flags that decide PDFium's compiled form and where
// it is cached: the workers' and `stevedore pdf-cache`'s, so the two agree.
func pdfModuleFlags(f *flags) (cacheDir *string, memoryMiB *int) {
	memoryMiB = f.Int("pdf-memory-mib", extract.DefaultPDFMemoryBytes>>20, "memory cap of one PDFium instance")
	cacheDir = f.String("cache-dir", defaultCacheDir(), "where PDFium's compiled module is cached (\"\": compile at every start, seconds)")
	return cacheDir, memoryMiB
}

// minPDFMemoryMiB is the least --pdf-memory-mib (PDFium's own minimum is 18 MiB).
const minPDFMemoryMiB = 32

// atLeast refuses a flag value below lo.
func atLeast(name string, v *int, lo int) error {
	if v != nil && *v < lo {
		return fmt.Errorf("--%s %d: must be at least %d", name, *v, lo)
	}
	return nil
}

// validate refuses flag values that would start a broken fleet.
func (c *fleetConfig) validate() error {
	checks := []error{
		atLeast("workers", c.workers, 0), atLeast("task-concurrency", c.taskConcurrency, 1), atLeast("plan-concurrency", c.planConcurrency, 1),
		atLeast("tenant-concurrency", c.tenantConcurrency, 0), atLeast("memory-limit-mib", c.memoryLimitMiB, 0), atLeast("sts-rate", c.stsRate, 1), atLeast("replicas", c.replicas, 1),
		atLeast("spill-every", c.spillEvery, 1), atLeast("steal-above", c.stealAbove, 1), atLeast("org-task-share", c.orgTaskShare, 1),
		atLeast("api-rate", c.apiRate, 1), atLeast("max-queued-jobs", c.maxQueuedJobs, 1),
		atLeast("chunk-tokens", c.chunkTokens, 16), atLeast("max-object-mib", c.maxObjectMiB, 1), atLeast("max-decompressed-mib", c.maxDecompressedMiB, 1),
		atLeast("pdf-instances", c.pdfInstances, 1), atLeast("pdf-max-pages", c.pdfMaxPages, 1), atLeast("pdf-memory-mib", c.pdfMemoryMiB, minPDFMemoryMiB),
		creds.CheckSessionTemplate(*c.sessionTemplate), // its message names --session-name
	}
	if *c.replicas > 5 {
		checks = append(checks, fmt.Errorf("--replicas %d: JetStream allows at most 5", *c.replicas))
	}
	if *c.ackWait < time.Second {
		checks = append(checks, fmt.Errorf("--ack-wait %s: must be at least 1s (heartbeats run every quarter of it)", *c.ackWait))
	}
	if c.pdfTimeout != nil && *c.pdfTimeout < time.Second {
		checks = append(checks, fmt.Errorf("--pdf-timeout %s: must be at least 1s", *c.pdfTimeout))
	}
	if c.sweepMaxShare != nil && (*c.sweepMaxShare <= 0 || *c.sweepMaxShare > 1) {
		checks = append(checks, fmt.Errorf("--sweep-max-share %v: must be above 0 and at most 1", *c.sweepMaxShare))
	}
	if c.sweepTimeout != nil && *c.sweepTimeout < time.Minute {
		checks = append(checks, fmt.Errorf("--sweep-timeout %s: must be at least 1m", *c.sweepTimeout))
	}
	if c.shutdownGrace != nil && *c.shutdownGrace < 0 {
		checks = append(checks, fmt.Errorf("--shutdown-grace %s: must not be negative", *c.shutdownGrace))
	}
	switch *c.logLevel {
	case "debug", "info", "warn", "error":
	default:
		checks = append(checks, fmt.Errorf("--log-level %q: must be debug, info, warn or error", *c.logLevel))
	}
	if *c.logFormat != "json" && *c.logFormat != "text" {
		checks = append(checks, fmt.Errorf("--log-format %q: must be json or text", *c.logFormat))
	}
	if err := errors.Join(checks...); err != nil {
		return usageError(err)
	}
	return nil
}

// runFleet wires the components a command asked for and runs them in one
// errgroup until ctx is cancelled. Shutdown order: stop accepting HTTP
// requests, stop claiming, let in-flight work finish (grace), close NATS.
func runFleet(ctx context.Context, c *fleetConfig, log *slog.Logger) error {
	if err := c.validate(); err != nil {
		return err
	}
	limit, source := applyMemoryLimit(*c.memoryLimitMiB, cgroupMemoryFiles)
	logMemoryLimit(log, limit, source)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(ctx)
	// The metrics listener answers from the start — alive, not ready — so a
	// process started before NATS waits for it instead of crash-looping.
	health := &switchHandler{}
	health.set(waitingMux())
	if err := serve(gctx, g, "metrics", *c.metricsListen, health, log); err != nil {
		return err
	}
	nc, js, err := connectWaiting(ctx, c.target(), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p := &process{c: c, log: log, setup: setup, nc: nc, js: js, reg: prometheus.NewRegistry(), g: g, gctx: gctx,
		topo: schema.Topology{Replicas: *c.replicas, AckWait: *c.ackWait, Update: *c.updateTopology}}
	if err := p.topo.Ensure(setup, js); err != nil {
		return err
	}
	p.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	processMetrics(p.reg, nc, js)
	if err := p.open(); err != nil {
		return err
	}
	if err := p.startAPI(); err != nil {
		return err
	}
	if err := p.startSQS(); err != nil {
		return err
	}
	stopPDF, err := p.startWorkers()
	if err != nil {
		return err
	}
	defer stopPDF()
	// Last, so that /readyz answering means the API accepts connections too.
	health.set(p.metricsMux())
	log.Info("stevedore running", "nats_url", redactURL(*c.natsURL), "metrics", *c.metricsListen, "api", deref(c.listen), "workers", deref(c.workers))
	err = p.g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// process is what one stevedore process's components share: its NATS
// connection, topology, metrics, registry, AWS configuration and STS
// broker, and the group they run in.
type process struct {
	c      *fleetConfig
	log    *slog.Logger
	setup  context.Context // bounds start-up
	nc     *nats.Conn
	js     jetstream.JetStream
	topo   schema.Topology
	reg    *prometheus.Registry
	regy   *registry.Registry
	awsCfg aws.Config
	broker *creds.Broker // made on first use (getBroker)
	g      *errgroup.Group
	gctx   context.Context
}

// open opens the tenant registry (with the KEK, if any) and loads the AWS
// configuration when an API or workers need it.
func (p *process) open() error {
	kek, err := loadKEK(*p.c.kekFile)
	if err != nil {
		return err
	}
	p.regy, err = registry.Open(p.setup, p.js, registry.Config{ExternalIDPrefix: *p.c.externalIDPrefix, KEK: kek, Logger: p.log.With("component", "registry")})
	if err != nil {
		return err
	}
	if p.c.listen != nil || (p.c.workers != nil && *p.c.workers > 0) {
		if p.awsCfg, err = loadAWSConfig(p.setup, p.log); err != nil {
			return fmt.Errorf("load AWS configuration: %w", err)
		}
	}
	return nil
}

// metricsMux serves /healthz, /readyz, /metrics and, with --pprof, profiles.
func (p *process) metricsMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if !p.nc.IsConnected() {
			http.Error(w, "not connected to NATS", http.StatusServiceUnavailable)
			return
		}
		if err := schema.Present(rctx, p.js); err != nil {
			http.Error(w, "topology missing: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{}))
	if *p.c.pprof {
		runtime.SetBlockProfileRate(int((100 * time.Microsecond).Nanoseconds())) // one sample per 100 µs blocked
		runtime.SetMutexProfileFraction(100)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		p.log.Warn("profiles served at /debug/pprof/ on the metrics listener", "metrics", *p.c.metricsListen)
	}
	return mux
}

// getBroker returns the process's one STS broker, shared by its workers and
// customer-account queues, made on first use.
func (p *process) getBroker() (*creds.Broker, error) {
	if p.broker != nil {
		return p.broker, nil
	}
	client := stsClient(p.awsCfg)
	chained, me, err := creds.DetectRoleChaining(p.setup, client)
	if err != nil {
		p.log.Warn("could not tell whether our identity is a role session; long sessions fall back to 1h if refused", "error", err)
	} else if chained {
		p.log.Info("our identity is a role session: customer sessions are capped at 1h (role chaining)", "identity", me)
	}
	d := time.Hour
	if p.c.sessionDuration != nil {
		d = *p.c.sessionDuration
	}
	verdicts, err := worker.NewVerdicts(p.setup, p.js)
	if err != nil {
		return nil, err
	}
	p.broker, err = creds.New(creds.Config{STS: client, Duration: d, RoleChaining: chained, Region: p.awsCfg.Region,
		Rate: rate.Limit(*p.c.stsRate), Burst: 2 * *p.c.stsRate, Registerer: p.reg, OnHealth: worker.RecordHealth(p.regy, p.log), Shared: verdicts})
	return p.broker, err
}

// startAPI serves the HTTP API, with --listen.
func (p *process) startAPI() error {
	c := p.c
	if c.listen == nil {
		return nil
	}
	verifier := newVerifier(p.awsCfg, *c.s3PathStyle, sessionNaming{*c.sessionPrefix, *c.sessionTemplate}, *c.devEmulatorSTS, p.regy, p.log)
	api, err := producer.New(p.setup, producer.Config{JS: p.js, Registry: p.regy, Registerer: p.reg, Logger: p.log.With("component", "api"),
		PrincipalARN: *c.principalARN, Verifier: verifier, RequestRate: rate.Limit(*c.apiRate), RequestBurst: 2 * *c.apiRate, MaxQueuedJobs: *c.maxQueuedJobs})
	if err != nil {
		return err
	}
	return serve(p.gctx, p.g, "api", *c.listen, api, p.log)
}

// startSQS runs the SQS bridge: the queues of --sqs-queue-url, and those
// customers attach over the API, picked up and dropped as they come and go.
func (p *process) startSQS() error {
	c := p.c
	if c.sqs == nil {
		return nil
	}
	names := sessionNaming{*c.sessionPrefix, *c.sessionTemplate}
	c.sqs.devEmulatorSTS = c.devEmulatorSTS != nil && *c.devEmulatorSTS
	queues, err := c.sqs.build(p.awsCfg, p.regy, p.getBroker, names)
	if err != nil {
		return err
	}
	attach := func(rec *registry.NotificationQueue) (producer.Queue, error) {
		return c.sqs.attached(p.awsCfg, p.regy, p.getBroker, names, rec)
	}
	bridge, err := producer.NewBridge(p.gctx, producer.BridgeConfig{JS: p.js, Registry: p.regy, Queues: queues, Attach: attach, Pollers: *c.sqs.pollers,
		Visibility: *c.sqs.visibility, MaxReceives: *c.sqs.maxReceives, Registerer: p.reg, Logger: p.log.With("component", "sqs")})
	if err != nil {
		return err
	}
	p.g.Go(func() error { return bridge.Run(p.gctx) })
	p.log.Info("SQS bridge running", "queues", len(queues), "attached_queues", "followed", "pollers_per_queue", *c.sqs.pollers)
	return nil
}

// startWorkers runs --workers workers sharing one pool of PDFium instances;
// stop closes the pool once they are done.
func (p *process) startWorkers() (stop func(), err error) {
	c := p.c
	if c.workers == nil || *c.workers == 0 {
		return func() {}, nil
	}
	broker, err := p.getBroker()
	if err != nil {
		return nil, err
	}
	instances := min(*c.pdfInstances, *c.workers**c.taskConcurrency)
	pdf := extract.NewPDF(extract.PDFConfig{Instances: instances, MaxPages: *c.pdfMaxPages, Timeout: *c.pdfTimeout,
		MemoryBytes: int64(*c.pdfMemoryMiB) << 20, CacheDir: *c.cacheDir, SeedDir: *c.cacheSeed})
	warmStart := time.Now()
	if err := pdf.Check(); err != nil {
		pdf.Close()
		return nil, fmt.Errorf("PDF extractor (--cache-dir, --pdf-memory-mib): %w", err)
	}
	p.log.Info("PDF extractor checked; it starts on the first PDF", "instances", instances, "took", time.Since(warmStart).Round(time.Millisecond))
	ocr, err := c.ocr.start(p.log, p.reg)
	if err != nil {
		pdf.Close()
		return nil, err
	}
	for i := 0; i < *c.workers; i++ {
		w, err := worker.New(p.setup, worker.Config{
			JS: p.js, Registry: p.regy, Broker: broker, AWS: p.awsCfg, S3PathStyle: *c.s3PathStyle, Topology: p.topo,
			TaskConcurrency: *c.taskConcurrency, TenantConcurrency: *c.tenantConcurrency, Heartbeat: *c.ackWait / 4, PlanConcurrency: *c.planConcurrency, ChunkTokens: *c.chunkTokens,
			SpillEvery: *c.spillEvery, StealAbove: *c.stealAbove, NoAffinity: *c.noAffinity, OrgTaskShare: *c.orgTaskShare,
			SweepMaxShare: *c.sweepMaxShare, SweepTimeout: *c.sweepTimeout,
			MaxObjectBytes: int64(*c.maxObjectMiB) << 20, MaxDecompressedBytes: int64(*c.maxDecompressedMiB) << 20, PDF: pdf, OCR: ocr, ShutdownGrace: *c.shutdownGrace, SessionPrefix: *c.sessionPrefix, SessionTemplate: *c.sessionTemplate,
			Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"worker": strconv.Itoa(i)}, p.reg),
			Logger:     p.log.With("component", "worker"), Name: "worker-" + strconv.Itoa(i),
		})
		if err != nil {
			pdf.Close()
			return nil, err
		}
		p.g.Go(func() error { return w.Run(p.gctx) })
	}
	return func() { _ = pdf.Close() }, nil
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// serve binds addr at once (so that, once it returns, the server accepts
// connections), runs an HTTP server with timeouts in g, and shuts it down
// when ctx ends.
func serve(ctx context.Context, g *errgroup.Group, name, addr string, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listen %s: %w", name, addr, err)
	}
	log.Info("listening", "server", name, "addr", ln.Addr().String())
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return nil
}
