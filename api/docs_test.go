package api_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/config"
)

// needShell skips the test unless bash, a curl with --json (7.82+) and python3 are
// installed: the documented shell flow needs exactly these.
func needShell(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the documented shell flow needs %s, which is not installed", tool)
		}
	}
	out, err := exec.Command("curl", "--help", "all").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--json")) {
		t.Skip("the documented shell flow needs curl 7.82 or newer (--json)")
	}
}

// shBlock is the first ```sh block in the section under the line heading (up to the next
// heading) of doc that contains want.
func shBlock(t *testing.T, doc, heading, want string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("docs/api.md has no heading %q", heading)
	}
	section := doc[i+len(heading)+2:]
	if loc := regexp.MustCompile(`\n#{1,3} `).FindStringIndex(section); loc != nil {
		section = section[:loc[0]]
	}
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		if strings.Contains(m[1], want) {
			return m[1]
		}
	}
	t.Fatalf("docs/api.md, %q: no sh block containing %q", heading, want)
	return ""
}

// startDocsHub runs the whole app with the admin token the docs use.
func startDocsHub(t *testing.T) *apptest.Hub {
	return apptest.Start(t, func(c *config.Config) { c.Admin.Token = "ADMIN" })
}

// runShell runs script with bash and returns its stdout; stderr goes to the test log.
func runShell(t *testing.T, script string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("stderr:\n%s", stderr.String())
	if err != nil {
		t.Fatalf("script failed: %v\nscript:\n%s\nstdout:\n%s", err, script, stdout.String())
	}
	return stdout.String()
}

// TestDocsShellFlow runs docs/api.md's own shell examples, taken from the file, against a
// real hub: solve a challenge, register, read the code from the outbox, confirm, solve
// another, log in. Only the hub's address is replaced.
func TestDocsShellFlow(t *testing.T) {
	needShell(t)
	raw, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	solver := shBlock(t, doc, "### POST /api/v1/challenges", "answer=")
	steps := []struct{ name, block, want string }{
		{"register", shBlock(t, doc, "### POST /api/v1/accounts: register", "/api/v1/accounts"), `"status":"code_sent"`},
		{"confirm", shBlock(t, doc, "### POST /api/v1/accounts/confirm: confirm with the code", "CODE="), `"status":"confirmed"`},
		{"login", shBlock(t, doc, "### POST /api/v1/sessions: log in", "/api/v1/sessions"), `"token":"dh_`},
	}
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for _, s := range steps {
		if strings.Contains(s.block, "$answer") {
			script.WriteString(solver)
		}
		script.WriteString("echo '=== " + s.name + "'\n" + s.block + "echo\n")
	}
	h := startDocsHub(t)
	out := runShell(t, strings.ReplaceAll(script.String(), "http://127.0.0.1:8080", h.URL()))
	for _, s := range steps {
		_, after, ok := strings.Cut(out, "=== "+s.name+"\n")
		if !ok {
			t.Fatalf("no output for %s:\n%s", s.name, out)
		}
		answer, _, _ := strings.Cut(after, "\n")
		if !strings.Contains(answer, s.want) {
			t.Fatalf("%s answered %s, want %s", s.name, answer, s.want)
		}
	}
}

// scripts/register.sh, which README's quick start runs, works against a real hub.
func TestRegisterScript(t *testing.T) {
	needShell(t)
	h := startDocsHub(t)
	out := runShell(t, "../scripts/register.sh 'Anna@Example.com' 'correct horse battery'", "H="+h.URL(), "ADMIN=ADMIN")
	token := strings.TrimSpace(out)
	c := newClient(t, h.URL(), "ADMIN")
	me := c.want(c.do("GET", "/api/v1/me", token, nil), http.StatusOK)
	if me.str("identifier") != "Anna@example.com" || me.str("status") != "active" {
		t.Fatalf("me: %s", me.raw)
	}
}

// A body sent as a form (what curl -d does without a header) is refused, and the message says
// what to send instead.
func TestFormBodyRefusedWithAHint(t *testing.T) {
	h := startDocsHub(t)
	res, err := http.Post(h.URL()+"/api/v1/accounts/resend", "application/x-www-form-urlencoded",
		strings.NewReader(`{"identifier":"ann@example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(res.Body)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(buf.String(), "Content-Type: application/json") ||
		!strings.Contains(buf.String(), "--json") {
		t.Fatalf("form body: %d %s", res.StatusCode, buf.String())
	}
}
