package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devicehub/devicehub/store/sqlite"
)

func TestDevicesProvision(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "devicehub.db")
	out := filepath.Join(dir, "creds.csv")
	args := []string{"devices", "provision", "--store-path", dbPath, "--type", "band", "--count", "3", "--out", out}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode %v, want 0600", fi.Mode().Perm())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || strings.Join(rows[0], ",") != "device_id,type,secret" {
		t.Fatalf("csv = %v", rows)
	}
	db, err := sqlite.Open(context.Background(), dbPath, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, r := range rows[1:] {
		if r[1] != "band" || len(r[2]) < 20 {
			t.Errorf("row %v", r)
		}
		d, err := db.DeviceByID(context.Background(), r[0])
		if err != nil || d.Type != "band" || d.AccountID != "" {
			t.Errorf("device %s in the store: %+v %v", r[0], d, err)
		}
	}

	t.Run("refuses to overwrite", func(t *testing.T) {
		before, _ := os.ReadFile(out)
		var stderr bytes.Buffer
		if code := run(context.Background(), args, nil, &bytes.Buffer{}, &stderr); code == 0 {
			t.Fatal("overwrote an existing credentials file")
		}
		after, _ := os.ReadFile(out)
		if !bytes.Equal(before, after) {
			t.Fatal("the existing file changed")
		}
	})
	t.Run("bad input leaves no file", func(t *testing.T) {
		for _, extra := range [][]string{{"--type", "toaster", "--count", "1"}, {"--type", "band", "--count", "0"}} {
			other := filepath.Join(dir, "other.csv")
			a := append([]string{"devices", "provision", "--store-path", dbPath, "--out", other}, extra...)
			if code := run(context.Background(), a, nil, &bytes.Buffer{}, &bytes.Buffer{}); code == 0 {
				t.Errorf("%v accepted", extra)
			}
			if _, err := os.Stat(other); !os.IsNotExist(err) {
				t.Errorf("%v left %s behind", extra, other)
			}
		}
	})
	t.Run("out is required", func(t *testing.T) {
		a := []string{"devices", "provision", "--store-path", dbPath, "--type", "band"}
		if code := run(context.Background(), a, nil, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
	})
}
