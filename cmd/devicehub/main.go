// Command devicehub is the device sync and pairing hub: `devicehub serve` runs the embedded
// MQTT broker, the HTTP API and the store in one process; the other subcommands are admin
// tools and the simulator. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/devicehub/devicehub/app"
	"github.com/devicehub/devicehub/config"
)

// exitError carries the process exit status of a failed command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is main without the process: tests call it with their own arguments and environment.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	root := newRoot(environ, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "devicehub:", err)
	var ce *config.Error
	if errors.As(err, &ce) {
		return 2
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// cli holds what every subcommand shares.
type cli struct {
	environ        []string
	stdout, stderr io.Writer
	configFile     string
}

func newRoot(environ []string, stdout, stderr io.Writer) *cobra.Command {
	c := &cli{environ: environ, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "devicehub",
		Short:         "Device sync and pairing hub: embedded MQTT broker, accounts, binding, sync relay",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&c.configFile, "config", "", "configuration file (default: ./devicehub.yaml when present)")
	config.AddFlags(root.PersistentFlags())

	root.AddCommand(c.serveCmd(), c.configCmd(), c.versionCmd())
	root.AddCommand(c.outboxCmd())
	root.AddCommand(c.simCmd(), c.devicesCmd())
	return root
}

// load reads the configuration for a command.
func (c *cli) load(cmd *cobra.Command) (*config.Config, error) {
	return config.Load(c.configFile, cmd.Flags(), c.environ)
}

// logger builds the process logger: text, or JSON when log.format is json.
func (c *cli) logger(cfg *config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(c.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(c.stderr, opts))
}

func (c *cli) serveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the hub: MQTT broker, HTTP API and store in one process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load(cmd)
			if err != nil {
				return err
			}
			log := c.logger(cfg)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := app.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			if err := a.Start(); err != nil {
				_ = a.Shutdown(context.Background())
				return err
			}
			var served error
			select {
			case <-ctx.Done():
				log.Info("shutting down", "cause", context.Cause(ctx))
			case served = <-a.Served():
				log.Error("http server failed", "error", served)
			}
			shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			return errors.Join(served, a.Shutdown(shutCtx))
		},
	}
}

func (c *cli) configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show or check the configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration (secrets redacted)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load(cmd)
			if err != nil {
				return err
			}
			for _, kv := range cfg.Redacted() {
				fmt.Fprintf(c.stdout, "%s: %q\n", kv[0], kv[1])
			}
			return nil
		},
	}, &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration, including that every listener address can be bound",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load(cmd)
			if err != nil {
				return err
			}
			if err := cfg.Check(); err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, "configuration ok")
			return nil
		},
	}, &cobra.Command{
		Use:   "keys",
		Short: "List every configuration key with its environment variable, flag and default (Markdown)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(c.stdout, "| key | environment | flag | default | meaning |")
			fmt.Fprintln(c.stdout, "|---|---|---|---|---|")
			for _, k := range config.Keys() {
				fmt.Fprintf(c.stdout, "| `%s` | `%s` | `--%s` | `%s` | %s |\n", k.Name, k.Env, config.FlagName(k.Name), k.Default, k.Usage)
			}
			return nil
		},
	})
	return cmd
}

func (c *cli) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and build information",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			bi, ok := debug.ReadBuildInfo()
			if !ok {
				fmt.Fprintln(c.stdout, "devicehub (no build information)")
				return nil
			}
			fmt.Fprintf(c.stdout, "devicehub %s\n", bi.Main.Version)
			fmt.Fprintf(c.stdout, "go: %s\n", bi.GoVersion)
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision", "vcs.time", "vcs.modified", "GOOS", "GOARCH", "CGO_ENABLED":
					fmt.Fprintf(c.stdout, "%s: %s\n", s.Key, s.Value)
				}
			}
			return nil
		},
	}
}
