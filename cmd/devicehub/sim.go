package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/devicehub/devicehub/simulator"
)

// simTarget are the flags that choose the hub a simulation runs against.
type simTarget struct {
	hub        string
	adminToken string
	embedded   bool
	verbose    bool
}

func (t *simTarget) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.hub, "hub", "", "a running hub: mqtt=HOST:PORT,http=HOST:PORT")
	cmd.Flags().StringVar(&t.adminToken, "admin-token", "", "the hub's admin.token (default $DEVICEHUB_ADMIN_TOKEN)")
	cmd.Flags().BoolVar(&t.embedded, "embedded", false, "start a hub in this process on free loopback ports with a temporary database")
	cmd.Flags().BoolVar(&t.verbose, "verbose", false, "log the embedded hub's and the simulator's details to stderr")
}

// open returns the target and a function that stops the embedded hub (a no-op for --hub).
func (c *cli) simOpen(ctx context.Context, t *simTarget) (simulator.Target, func(), *slog.Logger, error) {
	level := slog.LevelWarn
	if t.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level}))
	switch {
	case t.embedded && t.hub != "":
		return simulator.Target{}, nil, nil, &exitError{code: 2, err: errors.New("use either --embedded or --hub")}
	case t.embedded:
		e, target, err := simulator.StartEmbedded(ctx, log.With("component", "embedded-hub"))
		if err != nil {
			return simulator.Target{}, nil, nil, err
		}
		stop := func() {
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := e.Close(sctx); err != nil {
				log.Warn("embedded hub shutdown", "error", err)
			}
		}
		return target, stop, log, nil
	case t.hub != "":
		target, err := simulator.ParseHub(t.hub)
		if err != nil {
			return simulator.Target{}, nil, nil, &exitError{code: 2, err: err}
		}
		target.AdminToken = t.adminToken
		if target.AdminToken == "" {
			target.AdminToken = envValue(c.environ, "DEVICEHUB_ADMIN_TOKEN")
		}
		if target.AdminToken == "" {
			return simulator.Target{}, nil, nil, &exitError{code: 2, err: errors.New("--hub needs the hub's admin token: --admin-token or DEVICEHUB_ADMIN_TOKEN")}
		}
		return target, func() {}, log, nil
	}
	return simulator.Target{}, nil, nil, &exitError{code: 2, err: errors.New("say which hub: --embedded or --hub mqtt=HOST:PORT,http=HOST:PORT")}
}

func envValue(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func (c *cli) simCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "sim", Short: "Simulate people, phones, bands and scales against a hub (docs/simulator.md)"}
	cmd.AddCommand(c.simScenarioCmd(), c.simLoadCmd())
	return cmd
}

func (c *cli) simScenarioCmd() *cobra.Command {
	var t simTarget
	var asJSON bool
	var stepTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "scenario",
		Short: "Play the story (register, bind, pair, sync, lost mode, sell) and report each step; exit 0 only if all pass",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			target, stop, log, err := c.simOpen(cmd.Context(), &t)
			if err != nil {
				return err
			}
			defer stop()
			rep := simulator.RunScenario(cmd.Context(), simulator.ScenarioOptions{
				Target: target, StepTimeout: stepTimeout, Logger: log,
				OnStep: func(i, n int, r simulator.StepResult) {
					status := "ok  "
					if !r.OK {
						status = "FAIL"
					}
					out := c.stdout
					if asJSON {
						out = c.stderr // stdout holds only the JSON document
					}
					fmt.Fprintf(out, "%2d/%d %s %-31s %5d ms  %s\n", i, n, status, r.Name, r.MS, r.Detail)
				},
			})
			if asJSON {
				enc := json.NewEncoder(c.stdout)
				if err := enc.Encode(rep); err != nil {
					return err
				}
			}
			if !rep.OK {
				failed := 0
				for _, s := range rep.Steps {
					if !s.OK {
						failed++
					}
				}
				return &exitError{code: 1, err: fmt.Errorf("scenario: %d of %d steps did not pass", failed, len(rep.Steps))}
			}
			return nil
		},
	}
	t.addFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document with every step at the end (progress goes to stderr)")
	cmd.Flags().DurationVar(&stepTimeout, "step-timeout", 30*time.Second, "bound on each step")
	return cmd
}

func (c *cli) simLoadCmd() *cobra.Command {
	var t simTarget
	var asJSON bool
	var qos int
	opts := simulator.LoadOptions{}
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Provision, connect and pair many devices, publish telemetry and measure delivery at the phones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if qos != 0 && qos != 1 {
				return &exitError{code: 2, err: fmt.Errorf("--qos %d: 0 or 1", qos)}
			}
			opts.QoS = byte(qos)
			target, stop, log, err := c.simOpen(cmd.Context(), &t)
			if err != nil {
				return err
			}
			defer stop()
			opts.Target, opts.Logger = target, log
			// The bar (or the plain lines) goes to stderr when stdout carries the JSON.
			out := c.stdout
			if asJSON {
				out = c.stderr
			}
			f, isFile := out.(*os.File)
			opts.Progress = simulator.NewProgress(out, isFile && term.IsTerminal(int(f.Fd())))
			res, err := simulator.RunLoad(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if asJSON {
				if err := json.NewEncoder(c.stdout).Encode(res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(c.stdout, "devices %d (accounts %d), connected in %d ms\n", res.Devices, res.Accounts, res.ConnectMS)
				fmt.Fprintf(c.stdout, "sent %d, acked %d, delivered %d, lost %d, duplicates %d, misrouted %d, publish errors %d, unacknowledged %d\n",
					res.Sent, res.Acked, res.Delivered, res.Lost, res.Duplicates, res.Misrouted, res.PublishErrors, res.Unacked)
				fmt.Fprintf(c.stdout, "throughput %.1f/s, latency ms p50 %.2f p95 %.2f p99 %.2f max %.2f\n",
					res.ThroughputPerS, res.LatencyMS.P50, res.LatencyMS.P95, res.LatencyMS.P99, res.LatencyMS.Max)
			}
			if fs := res.Failures(); len(fs) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("load: %s", strings.Join(fs, ", "))}
			}
			return nil
		},
	}
	t.addFlags(cmd)
	f := cmd.Flags()
	f.IntVar(&opts.Accounts, "accounts", 10, "accounts")
	f.IntVar(&opts.BandsPerAccount, "bands-per-account", 1, "bands per account")
	f.IntVar(&opts.ScalesPerAccount, "scales-per-account", 1, "scales per account")
	f.IntVar(&opts.PhonesPerAccount, "phones-per-account", 1, "phones per account (gadgets are paired round robin)")
	f.Float64Var(&opts.Rate, "rate", 1, "messages per second per gadget")
	f.DurationVar(&opts.Duration, "duration", 10*time.Second, "how long gadgets publish")
	f.IntVar(&qos, "qos", 1, "QoS of telemetry and sync subscriptions (0 or 1)")
	f.IntVar(&opts.Concurrency, "concurrency", 200, "connections and requests in flight at once")
	f.DurationVar(&opts.Settle, "settle", 10*time.Second, "after publishing, how long delivery may stall before the rest counts as lost")
	f.DurationVar(&opts.PublishTimeout, "publish-timeout", 30*time.Second, "bound on each publish and its PUBACK; a slower one is a publish error")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON summary on stdout (progress goes to stderr)")
	return cmd
}
