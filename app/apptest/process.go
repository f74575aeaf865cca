package apptest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildBinary compiles cmd/devicehub into a temp dir once per test and returns its path.
// Tests that must kill the hub for real (SIGKILL) run it as a separate process.
func BuildBinary(tb testing.TB) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := filepath.Join(tb.TempDir(), "devicehub")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/devicehub")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build devicehub: %v\n%s", err, b)
	}
	return out
}

// Process is a hub running as its own OS process.
type Process struct {
	cmd      *exec.Cmd
	MQTTAddr string
	WSAddr   string
	HTTPAddr string
	done     chan struct{}
	mu       sync.Mutex
	logs     strings.Builder
}

// StartProcess runs `devicehub serve` with its database in dir, every listener on a loopback
// port the OS picks, JSON logs, and extra flags; it returns once the hub logged its addresses.
func StartProcess(tb testing.TB, bin, dir string, extra ...string) *Process {
	tb.Helper()
	args := append([]string{"serve",
		"--store-path", filepath.Join(dir, "devicehub.db"),
		"--broker-tcp-addr", "127.0.0.1:0", "--broker-ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-format", "json", "--admin-token", "test-admin-token",
	}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEVICEHUB_LOG_LEVEL=info")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if sent {
				continue
			}
			var rec struct{ Msg, MQTT, WS, HTTP string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "devicehub started" {
				p.MQTTAddr, p.WSAddr, p.HTTPAddr = rec.MQTT, rec.WS, rec.HTTP
				started <- nil
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		if !sent {
			started <- fmt.Errorf("hub exited before it started")
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() { p.Kill() })
	select {
	case err := <-started:
		if err != nil {
			<-p.done
			tb.Fatalf("%v; logs:\n%s", err, p.Logs())
		}
	case <-time.After(60 * time.Second):
		p.Kill()
		tb.Fatalf("hub did not start; logs:\n%s", p.Logs())
	}
	return p
}

// Logs is everything the process wrote to stderr so far.
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Terminate sends SIGTERM and waits (bounded by ctx) for a graceful exit; it returns the
// process's exit code.
func (p *Process) Terminate(ctx context.Context) (int, error) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-ctx.Done():
		p.Kill()
		return -1, ctx.Err()
	}
}
