// Package sqstest starts moto_server as a real SQS endpoint for tests. moto
// comes from PyPI ("pip install 'moto[server]'"); where it is not installed
// the tests that need it skip with that message, unless
// STEVEDORE_REQUIRE_MOTO is set (make test sets it), when they fail.
package sqstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Install is what to run where moto_server is missing.
const Install = "moto_server not found on PATH: install it with pip install 'moto[server]' (Python 3)"

// Server is a running moto_server.
type Server struct {
	URL string
	cmd *exec.Cmd
}

// Start runs moto_server on a free loopback port and stops it (by PID) when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("moto_server"); err != nil {
		if os.Getenv("STEVEDORE_REQUIRE_MOTO") != "" {
			t.Fatal(Install)
		}
		t.Skip(Install)
	}
	s, err := Launch()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Launch runs moto_server on a free loopback port; Stop ends it.
func Launch() (*Server, error) {
	path, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, errors.New(Install)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(path, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("moto_server did not start on %s: %v", s.URL, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends moto_server and its children, by process group.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Client is an SQS client for the server (moto accepts any credentials).
func (s *Server) Client() *sqs.Client {
	return sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIAMOTOTESTTESTTEST", "moto-test-secret", "")})
}

// Queue creates a queue with the given visibility timeout and returns its URL.
func (s *Server) Queue(t testing.TB, name string, visibility time.Duration) string {
	t.Helper()
	url, err := s.CreateQueue(context.Background(), name, visibility)
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// CreateQueue creates a queue with the given visibility timeout and returns its URL.
func (s *Server) CreateQueue(ctx context.Context, name string, visibility time.Duration) (string, error) {
	out, err := s.Client().CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name),
		Attributes: map[string]string{"VisibilityTimeout": fmt.Sprint(int(visibility / time.Second))}})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.QueueUrl), nil
}
