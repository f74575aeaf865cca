package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devicehub/devicehub/apiclient"
	"github.com/devicehub/devicehub/app/apptest"
)

// TestOutboxList reads the messages a running hub wrote (WAL lets the tool read beside it):
// two registrations leave a confirmation code each in the outbox, and `outbox list` shows
// them, filtered by --to.
func TestOutboxList(t *testing.T) {
	dir := t.TempDir()
	h := apptest.StartIn(t, dir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api := apiclient.New(h.URL())
	api.AdminToken = h.Config.Admin.Token
	codes := map[string]string{}
	for _, who := range []string{"anna@example.com", "ben@example.com"} {
		if err := api.Register(ctx, who, "correct horse battery staple 7"); err != nil {
			t.Fatal(err)
		}
		code, err := api.LatestCode(ctx, who, "")
		if err != nil {
			t.Fatal(err)
		}
		codes[who] = code
	}

	var stdout, stderr bytes.Buffer
	args := []string{"outbox", "list", "--store-path", h.Config.Store.Path}
	if code := run(ctx, args, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CREATED") {
		t.Fatalf("want a header and two messages, got:\n%s", stdout.String())
	}
	// Newest first: ben registered last.
	for i, who := range []string{"ben@example.com", "anna@example.com"} {
		if !strings.Contains(lines[i+1], who) || !strings.Contains(lines[i+1], codes[who]) {
			t.Errorf("line %d = %q, want the message to %s with code %s", i+1, lines[i+1], who, codes[who])
		}
	}

	stdout.Reset()
	args = append(args, "--to", "anna@EXAMPLE.com") // normalized as at sign-up (domain case-folded)
	if code := run(ctx, args, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if out := stdout.String(); strings.Contains(out, "ben@") || !strings.Contains(out, codes["anna@example.com"]) {
		t.Fatalf("--to anna shows:\n%s", out)
	}
}

// TestOutboxListRefusesMissingDatabase: run from the wrong directory, `outbox list` used to
// create an empty database and list nothing. It exits 2 with an error naming store.path and
// its value, and creates nothing.
func TestOutboxListRefusesMissingDatabase(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, path string }{
		{"missing file", filepath.Join(dir, "data", "devicehub.db")},
		{"a directory", dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"outbox", "list", "--store-path", tc.path}, nil, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			if msg := stderr.String(); !strings.Contains(msg, "store.path") || !strings.Contains(msg, tc.path) {
				t.Errorf("stderr %q does not name store.path and its value", msg)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("outbox list created %v", entries)
	}
}
