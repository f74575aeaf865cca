package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/devices"
	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/store/sqlite"
)

// devicesCmd holds the factory tools. They open the store from the configuration directly,
// like `outbox list`, so a factory line needs no running hub or admin token (WAL lets it run
// beside one).
func (c *cli) devicesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "devices", Short: "Factory tools for devices"}
	var typ, out string
	var count int
	prov := &cobra.Command{
		Use:   "provision",
		Short: "Create gadgets with factory secrets and write device_id,type,secret to a new CSV file (mode 0600)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &exitError{code: 2, err: errors.New("--out is required: the secrets are shown only once")}
			}
			t, err := devices.ParseType(typ)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--type: %w", err)}
			}
			cfg, err := c.load(cmd)
			if err != nil {
				return err
			}
			// O_EXCL: never overwrite, so an earlier batch's only copy of its secrets is safe.
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			creds, err := provision(cmd, cfg.Store, t, count)
			if err == nil {
				err = writeCreds(f, creds)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				_ = os.Remove(out)
				return err
			}
			fmt.Fprintf(c.stdout, "provisioned %d %s devices; credentials in %s\n", len(creds), t, out)
			return nil
		},
	}
	prov.Flags().StringVar(&typ, "type", "", "device type: band, scale, router, phone or tablet")
	prov.Flags().IntVar(&count, "count", 1, "how many devices (1 to 10000)")
	prov.Flags().StringVar(&out, "out", "", "CSV file to create (refused if it exists)")
	cmd.AddCommand(prov)
	return cmd
}

func provision(cmd *cobra.Command, sc config.StoreConfig, t devices.Type, n int) ([]hub.Credentials, error) {
	db, err := sqlite.Open(cmd.Context(), sc.Path, sqlite.Options{Synchronous: sc.Synchronous, BusyTimeout: sc.BusyTimeout})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return hub.New(hub.Options{Store: db}).ProvisionDevices(cmd.Context(), t, n)
}

func writeCreds(f *os.File, creds []hub.Credentials) error {
	w := csv.NewWriter(f)
	if err := w.Write([]string{"device_id", "type", "secret"}); err != nil {
		return err
	}
	for _, c := range creds {
		if err := w.Write([]string{c.DeviceID, string(c.Type), c.Secret}); err != nil {
			return err
		}
	}
	w.Flush()
	return w.Error()
}
