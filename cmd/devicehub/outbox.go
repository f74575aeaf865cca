package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/devicehub/devicehub/config"
	"github.com/devicehub/devicehub/hub"
	"github.com/devicehub/devicehub/store/sqlite"
)

// outboxCmd reads the outbox straight from the database, so a developer with the outbox
// driver can read the codes the hub "sent" (the hub may be running: WAL allows it).
func (c *cli) outboxCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "outbox", Short: "Inspect the outbox of emails and SMS (codes, notices)"}
	var to string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List outbox messages, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load(cmd)
			if err != nil {
				return err
			}
			// sqlite.Open creates a missing database (the hub wants that at its first start);
			// here it would only hide a wrong directory or store.path behind an empty list.
			if err := existingDatabase(cfg.Store.Path); err != nil {
				return err
			}
			db, err := sqlite.Open(cmd.Context(), cfg.Store.Path, sqlite.Options{Synchronous: cfg.Store.Synchronous, BusyTimeout: cfg.Store.BusyTimeout})
			if err != nil {
				return &config.Error{Key: "store.path", Value: cfg.Store.Path, Reason: "cannot open the database", Err: err}
			}
			defer db.Close()
			if to != "" {
				if id, err := hub.ParseIdentifier("", "", to); err == nil {
					to = id.Value
				}
			}
			msgs, err := db.ListOutbox(cmd.Context(), to, limit)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CREATED\tCHANNEL\tTO\tSTATUS\tATTEMPTS\tBODY")
			for _, m := range msgs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%q\n", m.CreatedAt.UTC().Format(time.RFC3339), m.Channel, m.To, m.Status, m.Attempts, m.Body)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&to, "to", "", "only messages to this email or phone")
	list.Flags().IntVar(&limit, "limit", 20, "how many messages")
	cmd.AddCommand(list)
	return cmd
}

// existingDatabase fails with a *config.Error (exit status 2) unless path is a file that
// exists: a tool that only reads the store must not create one.
func existingDatabase(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		wd, _ := os.Getwd()
		return &config.Error{Key: "store.path", Value: path, Reason: "no database there (relative to " + wd + "); run from the hub's directory or set store.path to its database"}
	case err != nil:
		return &config.Error{Key: "store.path", Value: path, Reason: "cannot read the database", Err: err}
	case !fi.Mode().IsRegular():
		return &config.Error{Key: "store.path", Value: path, Reason: "not a database file"}
	}
	return nil
}
