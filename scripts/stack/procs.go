package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Proc is one process the harness started and may kill, restart or stop.
type Proc struct {
	Name string
	bin  string
	args []string
	env  []string
	log  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// Starts counts how often the process was started.
	Starts int
}

// StartProc starts bin with args; its output is appended to dir/name.log.
func StartProc(name, dir, bin string, env []string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, bin: bin, args: args, env: env, log: filepath.Join(dir, name+".log")}
	return p, p.Start()
}

// Start (re)starts the process.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = p.env, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	p.Starts++
	return nil
}

// PID is the running process's ID.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Signal sends sig and, when wait is set, waits up to a minute for the exit.
func (p *Proc) Signal(sig syscall.Signal, wait bool) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(sig)
	if wait {
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// Stop ends the process (SIGTERM, then SIGKILL).
func (p *Proc) Stop() {
	if p == nil || p.cmd == nil || p.Exited() {
		return
	}
	p.Signal(syscall.SIGTERM, true)
}

// RSSHighWater is the process's peak resident set (VmHWM) in bytes.
func (p *Proc) RSSHighWater() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("VmHWM not found")
}

// NATSServer builds nats-server from the module's pinned version (go.mod)
// into the cache directory once and returns its path.
func NATSServer(ctx context.Context, root string) (string, error) {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	ver, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2").Output()
	if err != nil {
		return "", fmt.Errorf("nats-server version: %w", err)
	}
	bin := filepath.Join(cache, "stevedore", "bin", "nats-server-"+strings.TrimSpace(string(ver)))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build nats-server: %v\n%s", err, out)
	}
	return bin, nil
}

// Cluster is a JetStream cluster of nats-server processes on loopback.
type Cluster struct {
	Nodes []*Proc
	URLs  string // comma-separated client URLs
	// Profiles and Monitors are the nodes' pprof and monitoring endpoints
	// (http://127.0.0.1:port), in the order of Nodes.
	Profiles, Monitors []string
}

// StartCluster starts n clustered nats-server nodes with JetStream and waits
// until JetStream answers.
func StartCluster(ctx context.Context, dir, bin string, n int) (*Cluster, error) {
	ports := make([]int, 4*n)
	for i := range ports {
		var err error
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	var routes, urls []string
	for i := 0; i < n; i++ {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	c := &Cluster{URLs: strings.Join(urls, ",")}
	for i := 0; i < n; i++ {
		c.Profiles = append(c.Profiles, fmt.Sprintf("http://127.0.0.1:%d", ports[2*n+i]))
		c.Monitors = append(c.Monitors, fmt.Sprintf("http://127.0.0.1:%d", ports[3*n+i]))
		name := fmt.Sprintf("nats-%d", i)
		store := filepath.Join(dir, name)
		if err := os.MkdirAll(store, 0o755); err != nil {
			return nil, err
		}
		p, err := StartProc(name, dir, bin, os.Environ(), "-n", name, "-a", "127.0.0.1", "-p", strconv.Itoa(ports[i]),
			"-js", "-sd", store, "--cluster_name", "stevedore", "-cluster", routes[i], "-routes", strings.Join(routes, ","),
			"--profile", strconv.Itoa(ports[2*n+i]), "-m", strconv.Itoa(ports[3*n+i]))
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, p)
	}
	return c, c.WaitReady(ctx)
}

// StartNATS starts one nats-server process with JetStream (no cluster) and
// waits until JetStream answers.
func StartNATS(ctx context.Context, dir, bin string) (*Cluster, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	prof, err := freePort()
	if err != nil {
		return nil, err
	}
	mon, err := freePort()
	if err != nil {
		return nil, err
	}
	store := filepath.Join(dir, "nats")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, err
	}
	p, err := StartProc("nats", dir, bin, os.Environ(), "-n", "nats", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", store, "--profile", strconv.Itoa(prof), "-m", strconv.Itoa(mon))
	if err != nil {
		return nil, err
	}
	c := &Cluster{Nodes: []*Proc{p}, URLs: fmt.Sprintf("nats://127.0.0.1:%d", port), Profiles: []string{fmt.Sprintf("http://127.0.0.1:%d", prof)},
		Monitors: []string{fmt.Sprintf("http://127.0.0.1:%d", mon)}}
	return c, c.WaitReady(ctx)
}

// WaitReady waits until every node accepts connections and JetStream answers.
func (c *Cluster) WaitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for _, u := range strings.Split(c.URLs, ",") {
		for {
			conn, err := net.DialTimeout("tcp", strings.TrimPrefix(u, "nats://"), time.Second)
			if err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not listening: %w", u, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for {
		nc, err := nats.Connect(c.URLs)
		if err == nil {
			js, _ := jetstream.New(nc)
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = js.AccountInfo(actx)
			cancel()
			nc.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("JetStream cluster not ready: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, p := range c.Nodes {
		p.Stop()
	}
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort() (int, error) { return freePort() }

// WaitOK polls url until it answers 200 or timeout passes.
func WaitOK(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
