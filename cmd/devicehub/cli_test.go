package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
)

// The tests in this file run the real binary, as a user or a script would: exit status,
// stdout and stderr are what they see.

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// runBin runs bin with args in dir, with the process environment minus any DEVICEHUB_ key
// plus env, and returns its exit status and output. A command that does not end within a
// minute (serve that started after all) is killed and fails the test.
func runBin(t *testing.T, bin, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEVICEHUB_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v did not end; stderr:\n%s", args, stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// badValues are the bad values of the issue: each must stop `serve` and `config check` with
// exit status 2 and an error that names the key and the value.
func badValues(t *testing.T, dir string) []struct {
	name string
	args []string
	key  string
	val  string
} {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	unknown := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknown, []byte("http:\n  adr: 127.0.0.1:9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missingCert := filepath.Join(dir, "no-such-cert.pem")
	return []struct {
		name string
		args []string
		key  string
		val  string
	}{
		{"unparseable address", []string{"--http-addr", "127.0.0.1"}, "http.addr", "127.0.0.1"},
		{"unknown key in the file", []string{"--config", unknown}, "http.adr", "127.0.0.1:9"},
		{"port in use", []string{"--broker-tcp-addr", busy.Addr().String()}, "broker.tcp_addr", busy.Addr().String()},
		{"unreadable cert", []string{"--tls-cert-file", missingCert, "--tls-key-file", missingCert}, "tls.cert_file", missingCert},
	}
}

// isolated are flags that keep a run of the binary to the test's temp dir and OS-chosen
// loopback ports.
func isolated(dir string) []string {
	return []string{"--store-path", filepath.Join(dir, "devicehub.db"),
		"--broker-tcp-addr", "127.0.0.1:0", "--broker-ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}
}

func TestCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := apptest.BuildBinary(t)

	t.Run("serve bad value exits 2", func(t *testing.T) {
		dir := t.TempDir()
		for _, tc := range badValues(t, dir) {
			t.Run(tc.name, func(t *testing.T) {
				r := runBin(t, bin, dir, nil, append(append([]string{"serve"}, isolated(dir)...), tc.args...)...)
				wantConfigError(t, r, tc.key, tc.val)
			})
		}
	})

	t.Run("config check", func(t *testing.T) {
		dir := t.TempDir()
		for _, tc := range badValues(t, dir) {
			t.Run(tc.name, func(t *testing.T) {
				r := runBin(t, bin, dir, nil, append(append([]string{"config", "check"}, isolated(dir)...), tc.args...)...)
				wantConfigError(t, r, tc.key, tc.val)
			})
		}
		t.Run("good config", func(t *testing.T) {
			good := filepath.Join(dir, "good.yaml")
			if err := os.WriteFile(good, []byte("log:\n  level: debug\nnotify:\n  driver: webhook\n  webhook_url: https://gw.example/sms\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := runBin(t, bin, dir, nil, append([]string{"config", "check", "--config", good}, isolated(dir)...)...)
			if r.code != 0 || strings.TrimSpace(r.stdout) != "configuration ok" {
				t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "devicehub.db")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("config check created the database: %v", err)
			}
		})
	})

	t.Run("config print redacts secrets", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "secrets.yaml")
		if err := os.WriteFile(file, []byte("notify:\n  smtp:\n    password: pw-from-file-S3CRET\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runBin(t, bin, dir, []string{"DEVICEHUB_ADMIN_TOKEN=token-S3CRET"}, "config", "print", "--config", file,
			"--notify-webhook-url", "https://gw.example/sms/S3CRET?api_key=S3CRET")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if strings.Contains(r.stdout, "S3CRET") {
			t.Fatalf("config print shows a secret:\n%s", r.stdout)
		}
		got := printed(t, r.stdout)
		for k, want := range map[string]string{
			"admin.token":          "[redacted]",
			"notify.smtp.password": "[redacted]",
			"notify.webhook_url":   "https://gw.example/[redacted]?api_key=[redacted]",
		} {
			if got[k] != want {
				t.Errorf("%s = %q, want %q", k, got[k], want)
			}
		}
	})

	t.Run("config print precedence", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "layers.yaml")
		if err := os.WriteFile(file, []byte("http:\n  addr: 127.0.0.1:1001\nlog:\n  level: warn\nstore:\n  path: from-file.db\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := []string{"DEVICEHUB_HTTP_ADDR=127.0.0.1:1002", "DEVICEHUB_LOG_LEVEL=error"}
		r := runBin(t, bin, dir, env, "config", "print", "--config", file, "--http-addr", "127.0.0.1:1003")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		got := printed(t, r.stdout)
		for k, want := range map[string]string{
			"http.addr":       "127.0.0.1:1003", // flag over env over file
			"log.level":       "error",          // env over file
			"store.path":      "from-file.db",   // file over default
			"broker.tcp_addr": "127.0.0.1:1883", // default
		} {
			if got[k] != want {
				t.Errorf("%s = %q, want %q", k, got[k], want)
			}
		}
	})

	t.Run("devicehub.yaml in the working directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "devicehub.yaml"), []byte("log:\n  format: json\nsync:\n  window: 17\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runBin(t, bin, dir, nil, "config", "print")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if got := printed(t, r.stdout); got["log.format"] != "json" || got["sync.window"] != "17" {
			t.Fatalf("./devicehub.yaml not read: log.format=%q sync.window=%q", got["log.format"], got["sync.window"])
		}
		// The file found by itself is checked like one given with --config.
		if err := os.WriteFile(filepath.Join(dir, "devicehub.yaml"), []byte("sync:\n  windw: 17\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		wantConfigError(t, runBin(t, bin, dir, nil, "config", "print"), "sync.windw", "17")
	})

	t.Run("version", func(t *testing.T) {
		r := runBin(t, bin, t.TempDir(), nil, "version")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		lines := strings.Split(r.stdout, "\n")
		if !strings.HasPrefix(lines[0], "devicehub ") || len(strings.TrimPrefix(lines[0], "devicehub ")) == 0 {
			t.Errorf("first line %q does not give the version", lines[0])
		}
		for _, want := range []string{"go: " + runtime.Version(), "GOOS: " + runtime.GOOS, "GOARCH: " + runtime.GOARCH, "CGO_ENABLED: 1"} {
			if !strings.Contains(r.stdout, want+"\n") {
				t.Errorf("version output lacks %q:\n%s", want, r.stdout)
			}
		}
		// Built from a git checkout, the binary names its commit (not compared with HEAD:
		// a commit may land between the build and now), unless the toolchain was told not to
		// stamp it (GOFLAGS=-buildvcs=false).
		goflags, _ := exec.Command("go", "env", "GOFLAGS").Output()
		if exec.Command("git", "-C", sourceRoot(), "rev-parse", "HEAD").Run() == nil && !strings.Contains(string(goflags), "buildvcs=false") {
			if !regexp.MustCompile(`(?m)^vcs\.revision: [0-9a-f]{40}$`).MatchString(r.stdout) {
				t.Errorf("version output lacks vcs.revision:\n%s", r.stdout)
			}
		}
	})
}

// wantConfigError checks a run that a bad value stopped: exit 2 and one message naming the
// key and the value, as config.Error words it.
func wantConfigError(t *testing.T, r result, key, val string) {
	t.Helper()
	if r.code != 2 {
		t.Fatalf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
	}
	if want := fmt.Sprintf("devicehub: config %s=%q", key, val); !strings.Contains(r.stderr, want) {
		t.Fatalf("stderr does not contain %s:\n%s", want, r.stderr)
	}
}

// printed parses `config print` output (key: "value" lines).
func printed(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("config print line %q", l)
		}
		var s string
		if _, err := fmt.Sscanf(v, "%q", &s); err != nil {
			t.Fatalf("config print line %q: %v", l, err)
		}
		m[k] = s
	}
	return m
}

func sourceRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TestReadmeConfigTable: README's configuration table is what `devicehub config keys`
// prints, so a key added in the code cannot be missing from the docs.
func TestReadmeConfigTable(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"config", "keys"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	readme, err := os.ReadFile(filepath.Join(sourceRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "\n| key | environment | flag | default | meaning |\n")
	if !ok {
		t.Fatal("README has no configuration table")
	}
	table, _, _ := strings.Cut("| key | environment | flag | default | meaning |\n"+rest, "\n\n")
	if want := strings.TrimSpace(stdout.String()); strings.TrimSpace(table) != want {
		t.Fatalf("README's configuration table differs from `devicehub config keys`; replace it with:\n%s", want)
	}
}
