// Package azuritetest gives tests a Table Storage endpoint: Azurite's table service on loopback, started once per
// test binary, or an existing endpoint named by AZSCEP_TABLES_CONNECTION.
//
// Every ConnectionString call returns the shared endpoint with a fresh TablePrefix element, which
// tables.NewFromConnectionString puts in front of its table names, so tests never see each other's rows even
// when they run in parallel against one Azurite.
//
// Use Main from TestMain so that the shared Azurite stops when the test binary exits:
//
//	func TestMain(m *testing.M) { azuritetest.Main(m) }
package azuritetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/loadgen"
)

// Environment variables the harness reads.
const (
	// EnvConnection names an already running table endpoint (full connection string) to use instead of
	// starting Azurite.
	EnvConnection = "AZSCEP_TABLES_CONNECTION"
	// EnvBinary is the azurite-table executable; the default is <repo>/.local/azurite/node_modules/.bin/azurite-table.
	EnvBinary = "AZURITE_BIN"
	// EnvWarmup is how many enrollments' writes benchmarks send to the Azurite they started before they measure
	// it (DefaultWarmup when unset; 0 measures it cold).
	EnvWarmup = "AZSCEP_BENCH_AZURITE_WARMUP"
)

// DefaultWarmup is the benchmarks' warm-up in enrollments. A fresh Azurite's CPU per enrollment falls over its
// first few thousand (consistent with V8's JIT warming up; README, Figures), and a long-running store is past its
// start-up, so benchmarks measure Azurite warm.
const DefaultWarmup = 4000

// Warmup is how many enrollments a benchmark should write to warm Azurite: EnvWarmup or DefaultWarmup, and 0 for
// an endpoint the harness did not start (EnvConnection), which may be a real storage account and is not written
// to for warming.
func Warmup(tb testing.TB) int {
	if SharedPID() == 0 {
		return 0
	}
	v := os.Getenv(EnvWarmup)
	if v == "" {
		return DefaultWarmup
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		tb.Fatalf("azuritetest: %s=%q is not a count of enrollments", EnvWarmup, v)
	}
	return n
}

// Azurite's well-known development account (public, documented by Microsoft; not a secret).
const (
	accountName = "devstoreaccount1"
	accountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// startTimeout is generous: node takes a second to start Azurite on an idle machine but tens of seconds on a
// loaded CI runner.
const startTimeout = 2 * time.Minute

// Server is one Azurite table service process on a fixed loopback port. Stop and Start keep the port, so a
// store built on ConnectionString sees the backend vanish and come back. Azurite runs with in-memory
// persistence: a restart loses every table, so callers re-create theirs after Start.
type Server struct {
	bin  string
	port int
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *ringBuffer
}

// NewServer starts a dedicated Azurite for one test (for tests that stop it) and stops it at the end of the
// test. It fails the test when Azurite is not installed.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s, err := StartServer()
	if err != nil {
		t.Fatalf("azuritetest: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// StartServer starts Azurite's table service on a free loopback port.
func StartServer() (*Server, error) {
	bin, err := findBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "azurite-")
	if err != nil {
		return nil, fmt.Errorf("creating Azurite work directory: %w", err)
	}
	var lastErr error
	for range 3 { // another process can take the free port between picking and binding it
		port, err := freePort()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s := &Server{bin: bin, port: port, dir: dir}
		if lastErr = s.Start(); lastErr == nil {
			return s, nil
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

// Port is the table service's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// ConnectionString is the endpoint's connection string, without a TablePrefix.
func (s *Server) ConnectionString() string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;TableEndpoint=http://127.0.0.1:%d/%s;",
		accountName, accountKey, s.port, accountName)
}

// Start starts the process if it is not running and waits until the port accepts connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	cmd := exec.Command(s.bin,
		"--inMemoryPersistence", "--disableTelemetry", "--silent", "--skipApiVersionCheck",
		"--tableHost", "127.0.0.1", "--tablePort", strconv.Itoa(s.port))
	cmd.Dir = s.dir
	s.out = &ringBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()

	deadline := time.Now().Add(startTimeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		select {
		case <-done:
			return fmt.Errorf("azurite-table exited before listening on %s: %s", addr, s.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			killGroup(cmd)
			<-done
			return fmt.Errorf("azurite-table did not listen on %s within %s: %s", addr, startTimeout, s.out.String())
		}
	}
	s.cmd, s.done = cmd, done
	return nil
}

// Stop kills the process (there is nothing to flush: persistence is in memory) and waits for it to exit, so
// the port refuses connections when Stop returns.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	killGroup(s.cmd)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		return errors.New("azurite-table did not exit after SIGKILL")
	}
	s.cmd, s.done = nil, nil
	return nil
}

// Close stops the process and removes its work directory.
func (s *Server) Close() error {
	err := s.Stop()
	_ = os.RemoveAll(s.dir)
	return err
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// sharedServer starts the binary-wide Azurite on first use.
func sharedServer() (*Server, error) {
	shared.once.Do(func() { shared.srv, shared.err = StartServer() })
	return shared.srv, shared.err
}

// ConnectionString returns a connection string for a fresh, empty set of tables: the endpoint named by
// AZSCEP_TABLES_CONNECTION, or else the shared Azurite (started on first use), with a new TablePrefix. It fails
// the test when neither is available.
func ConnectionString(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvConnection)
	if base == "" {
		srv, err := sharedServer()
		if err != nil {
			t.Fatalf("azuritetest: %v", err)
		}
		base = srv.ConnectionString()
	}
	return WithPrefix(base, FreshPrefix())
}

// SharedPID is the process ID of the shared Azurite, or 0 when it is not running (benchmarks read its CPU time:
// on one machine the store's CPU competes with the server's).
func SharedPID() int {
	if shared.srv == nil {
		return 0
	}
	shared.srv.mu.Lock()
	defer shared.srv.mu.Unlock()
	if shared.srv.cmd == nil || shared.srv.cmd.Process == nil {
		return 0
	}
	return shared.srv.cmd.Process.Pid
}

// SharedCPU is the CPU time the shared Azurite has used so far, or 0 when it is not running (SharedPID).
func SharedCPU(tb testing.TB) time.Duration {
	pid := SharedPID()
	if pid == 0 {
		return 0
	}
	d, err := loadgen.ProcessCPU(pid)
	if err != nil {
		tb.Fatalf("azuritetest: %v", err)
	}
	return d
}

// WithPrefix returns conn with prefix appended to its TablePrefix element (added if absent).
func WithPrefix(conn, prefix string) string {
	var kept []string
	old := ""
	for part := range strings.SplitSeq(strings.TrimRight(conn, ";"), ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), "TablePrefix") {
			old = strings.TrimSpace(v)
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, ";") + ";TablePrefix=" + old + prefix + ";"
}

// FreshPrefix returns a table-name prefix no other call returns: a letter and eleven random letters/digits.
func FreshPrefix() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	b[0] = 't'
	return string(b)
}

// Main runs the tests and stops the shared Azurite afterwards. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		_ = shared.srv.Close()
	}
	os.Exit(code)
}

func findBinary() (string, error) {
	if bin := os.Getenv(EnvBinary); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinary, bin, err)
		}
		return bin, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, ".local", "azurite", "node_modules", ".bin", "azurite-table")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("Azurite is not installed at %s: run `make test` (which installs it), "+
			"or set %s to an azurite-table executable or %s to a running table endpoint", bin, EnvBinary, EnvConnection)
	}
	return bin, nil
}

// repoRoot walks up from the working directory (the package under test) to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ringBuffer keeps the last max bytes of Azurite's output for error messages.
type ringBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (r *ringBuffer) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Write(p)
	if extra := r.buf.Len() - r.max; extra > 0 {
		r.buf.Next(extra)
	}
	return len(p), nil
}

func (r *ringBuffer) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.TrimSpace(r.buf.String())
}
