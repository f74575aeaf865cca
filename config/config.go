// Package config loads devicehub's configuration with github.com/spf13/viper (defaults < file
// < DEVICEHUB_* environment < flags), validates every key before anything listens, and hands
// the rest of the program a plain Config struct: no other package imports viper.
package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config is the effective configuration.
type Config struct {
	Broker BrokerConfig
	HTTP   HTTPConfig
	Store  StoreConfig
	TLS    TLSConfig
	Log    LogConfig
	Admin  AdminConfig
	Notify NotifyConfig
	Sync   SyncConfig
	// Commands and LostMode tune owner commands to devices (hub/commands.go).
	Commands CommandsConfig
	LostMode LostModeConfig
}

// CommandsConfig is how long owner commands wait for their device.
type CommandsConfig struct {
	TTL         time.Duration // locate, ring
	SecurityTTL time.Duration // lock, unlock, wipe
}

// LostModeConfig tunes phones in lost mode.
type LostModeConfig struct {
	LocationInterval time.Duration // how often a lost phone reports its location
}

// SyncConfig is the sync log's retention and the relay's flow control.
type SyncConfig struct {
	Retention  time.Duration // 0 keeps entries forever
	MaxEntries int           // per account; 0 is unbounded
	Window     int           // entries in flight to one controller
}

// BrokerConfig is the embedded MQTT broker.
type BrokerConfig struct {
	TCPAddr        string // empty turns the TCP listener off
	WSAddr         string // empty turns the WebSocket listener off
	AllowAnonymous bool
	// MaxPacketSize bounds every MQTT packet after CONNECT is authenticated.
	MaxPacketSize int
	// MaxConnectPacketSize bounds packets before authentication (the CONNECT itself).
	MaxConnectPacketSize int
	// ConnectTimeout bounds the time from accepting a connection to its complete CONNECT.
	ConnectTimeout time.Duration
	// MaxUnackedPublishes bounds one connection's publishes waiting for their commit.
	MaxUnackedPublishes int
}

// HTTPConfig is the HTTP API, metrics and web portal server.
type HTTPConfig struct {
	Addr string
}

// StoreConfig is the SQLite database.
type StoreConfig struct {
	Path        string
	Synchronous string
	BusyTimeout time.Duration
}

// TLSConfig turns on TLS for the MQTT, WebSocket and HTTP listeners when both files are set.
type TLSConfig struct {
	CertFile string
	KeyFile  string
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// Load reads the certificate and key.
func (t TLSConfig) Load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string
	Format string
}

// SlogLevel is the parsed level (Validate has checked it).
func (l LogConfig) SlogLevel() slog.Level {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(l.Level))
	return lv
}

// AdminConfig protects the admin-only HTTP endpoints.
type AdminConfig struct {
	// Token is the bearer token of the admin endpoints; empty turns them off.
	Token string
}

// NotifyConfig selects how verification codes and notices reach people.
type NotifyConfig struct {
	Driver     string // outbox, smtp, webhook
	WebhookURL string
	SMTP       SMTPConfig
	// PublicURL is the hub's address as people's browsers reach it, used in emailed links.
	PublicURL string
}

// SMTPConfig is the mail server for the smtp driver.
type SMTPConfig struct {
	Host     string
	Port     int
	Username string
	Password string
	From     string
}

// key describes one configuration key: its default, its flag and what it means (README's
// configuration table is generated from the same facts by `devicehub config keys`).
type key struct {
	name   string
	def    any
	secret bool
	usage  string
}

// keyList lists every configuration key, in the order README shows them. A function, not a
// package variable, so nothing can change the list at run time.
func keyList() []key {
	return []key{
		{"broker.tcp_addr", "127.0.0.1:1883", false, "MQTT over TCP listener address (empty turns it off)"},
		{"broker.ws_addr", "127.0.0.1:8083", false, "MQTT over WebSocket listener address, path /mqtt (empty turns it off)"},
		{"broker.allow_anonymous", false, false, "accept MQTT clients without credentials (local experiments only; refused with a non-loopback listener)"},
		{"broker.max_packet_size", 256 * 1024, false, "largest MQTT packet accepted from an authenticated client, in bytes"},
		{"broker.max_connect_packet_size", 4096, false, "largest packet accepted before CONNECT is authenticated, in bytes"},
		{"broker.connect_timeout", "10s", false, "how long a new connection may take to complete its CONNECT (TLS handshake included) before it is closed"},
		{"broker.max_unacked_publishes", 256, false, "QoS 1 publishes of one connection waiting for their commit; past it the connection is not read (backpressure)"},
		{"http.addr", "127.0.0.1:8080", false, "HTTP API, /metrics, /healthz, /readyz and web portal address"},
		{"store.path", "./data/devicehub.db", false, "SQLite database file (its folder is created)"},
		{"store.synchronous", "FULL", false, "durability: FULL answers a write only once the WAL is flushed to disk (survives power loss), NORMAL survives a process crash only"},
		{"store.busy_timeout", "5s", false, "how long a store connection waits for a lock"},
		{"tls.cert_file", "", false, "PEM certificate; with tls.key_file turns on TLS for MQTT, WebSocket and HTTP"},
		{"tls.key_file", "", false, "PEM private key for tls.cert_file"},
		{"log.level", "info", false, "debug, info, warn or error"},
		{"log.format", "text", false, "text or json"},
		{"admin.token", "", true, "bearer token for the admin-only HTTP endpoints (empty turns them off)"},
		{"notify.driver", "outbox", false, "how codes are delivered: outbox (kept for development), smtp or webhook"},
		{"notify.webhook_url", "", false, "SMS/email gateway URL for the webhook driver (JSON POST), absolute http(s); shown with its user info, path and query values hidden, which may carry an API key"},
		{"notify.public_url", "http://127.0.0.1:8080", false, "the hub's address as people reach it, for links in emails: absolute http(s) URL without query"},
		{"notify.smtp.host", "", false, "SMTP server host for the smtp driver"},
		{"notify.smtp.port", 587, false, "SMTP server port (1-65535)"},
		{"notify.smtp.username", "", false, "SMTP user name"},
		{"notify.smtp.password", "", true, "SMTP password"},
		{"notify.smtp.from", "", false, "sender address of emails"},
		{"sync.retention", "720h", false, "how long the sync log keeps entries (0 keeps them forever); older ones are reported to controllers as a gap"},
		{"sync.max_entries", 1000000, false, "most sync log entries kept per account (0: no bound); older ones are reported as a gap"},
		{"sync.window", 256, false, "sync entries sent to one controller and not yet acknowledged (bounds memory per controller)"},
		{"commands.ttl", "24h", false, "how long locate and ring commands wait for an offline device before they expire"},
		{"commands.security_ttl", "720h", false, "how long lock, unlock and wipe commands wait for an offline device before they expire"},
		{"lost_mode.location_interval", "5m", false, "how often a phone in lost mode reports its location"},
	}
}

// KeyInfo is the public description of one key.
type KeyInfo struct {
	Name, Env, Default, Usage string
	Secret                    bool
}

// Keys describes every configuration key.
func Keys() []KeyInfo {
	out := make([]KeyInfo, 0, len(keyList()))
	for _, k := range keyList() {
		out = append(out, KeyInfo{Name: k.name, Env: EnvName(k.name), Default: fmt.Sprint(k.def), Usage: k.usage, Secret: k.secret})
	}
	return out
}

// EnvName is the environment variable of a key.
func EnvName(k string) string {
	return "DEVICEHUB_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(k))
}

// FlagName is the command-line flag of a key: broker.tcp_addr is --broker-tcp-addr.
func FlagName(k string) string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(k)
}

// Error is a bad configuration value. The CLI exits with status 2 on it.
type Error struct {
	Key    string
	Value  string
	Reason string
	Err    error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("config %s=%q: %s", e.Key, e.Value, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// AddFlags declares one flag per key on fs.
func AddFlags(fs *pflag.FlagSet) {
	for _, k := range keyList() {
		name := FlagName(k.name)
		switch d := k.def.(type) {
		case bool:
			fs.Bool(name, d, k.usage)
		case int:
			fs.Int(name, d, k.usage)
		default:
			fs.String(name, fmt.Sprint(d), k.usage)
		}
	}
}

// Load builds the configuration from defaults, the file (explicit path, or devicehub.yaml in
// the working directory when present), the environment and the flags that were set.
func Load(file string, fs *pflag.FlagSet, environ []string) (*Config, error) {
	v := viper.New()
	for _, k := range keyList() {
		v.SetDefault(k.name, k.def)
	}
	if file == "" {
		if _, err := os.Stat("devicehub.yaml"); err == nil {
			file = "devicehub.yaml"
		}
	}
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return nil, &Error{Key: "config", Value: file, Reason: "cannot read the configuration file", Err: err}
		}
		if err := checkUnknown(file); err != nil {
			return nil, err
		}
	}
	// The environment is passed in rather than read by viper, so tests need not touch the
	// process environment.
	env := map[string]string{}
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "DEVICEHUB_") {
			env[k] = val
		}
	}
	for _, k := range keyList() {
		if val, ok := env[EnvName(k.name)]; ok {
			v.Set(k.name, val)
		}
	}
	if fs != nil {
		for _, k := range keyList() {
			if f := fs.Lookup(FlagName(k.name)); f != nil && f.Changed {
				v.Set(k.name, f.Value.String())
			}
		}
	}
	return fromViper(v)
}

func checkUnknown(file string) error {
	fv := viper.New()
	fv.SetConfigFile(file)
	if err := fv.ReadInConfig(); err != nil {
		return &Error{Key: "config", Value: file, Reason: "cannot read the configuration file", Err: err}
	}
	known := map[string]bool{}
	for _, k := range keyList() {
		known[k.name] = true
	}
	var unknown []string
	for _, k := range fv.AllKeys() {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return &Error{Key: unknown[0], Value: fmt.Sprint(fv.Get(unknown[0])), Reason: "unknown key in " + file}
	}
	return nil
}

func fromViper(v *viper.Viper) (*Config, error) {
	var errs []error
	str := func(k string) string { return strings.TrimSpace(v.GetString(k)) }
	boolean := func(k string) bool {
		s := str(k)
		b, err := strconv.ParseBool(s)
		if err != nil {
			errs = append(errs, &Error{Key: k, Value: s, Reason: "not true or false"})
		}
		return b
	}
	integer := func(k string) int {
		s := str(k)
		n, err := strconv.Atoi(s)
		if err != nil {
			errs = append(errs, &Error{Key: k, Value: s, Reason: "not a whole number"})
		}
		return n
	}
	duration := func(k string) time.Duration {
		s := str(k)
		d, err := time.ParseDuration(s)
		if err != nil {
			errs = append(errs, &Error{Key: k, Value: s, Reason: "not a duration such as 5s"})
		}
		return d
	}
	c := &Config{
		Broker: BrokerConfig{
			TCPAddr:              str("broker.tcp_addr"),
			WSAddr:               str("broker.ws_addr"),
			AllowAnonymous:       boolean("broker.allow_anonymous"),
			MaxPacketSize:        integer("broker.max_packet_size"),
			MaxConnectPacketSize: integer("broker.max_connect_packet_size"),
			ConnectTimeout:       duration("broker.connect_timeout"),
			MaxUnackedPublishes:  integer("broker.max_unacked_publishes"),
		},
		HTTP:  HTTPConfig{Addr: str("http.addr")},
		Store: StoreConfig{Path: str("store.path"), Synchronous: strings.ToUpper(str("store.synchronous")), BusyTimeout: duration("store.busy_timeout")},
		TLS:   TLSConfig{CertFile: str("tls.cert_file"), KeyFile: str("tls.key_file")},
		Log:   LogConfig{Level: strings.ToLower(str("log.level")), Format: strings.ToLower(str("log.format"))},
		Admin: AdminConfig{Token: str("admin.token")},
		Notify: NotifyConfig{
			Driver:     strings.ToLower(str("notify.driver")),
			WebhookURL: str("notify.webhook_url"),
			PublicURL:  strings.TrimRight(str("notify.public_url"), "/"),
			SMTP: SMTPConfig{
				Host: str("notify.smtp.host"), Port: integer("notify.smtp.port"),
				Username: str("notify.smtp.username"), Password: str("notify.smtp.password"), From: str("notify.smtp.from"),
			},
		},
		Sync:     SyncConfig{Retention: duration("sync.retention"), MaxEntries: integer("sync.max_entries"), Window: integer("sync.window")},
		Commands: CommandsConfig{TTL: duration("commands.ttl"), SecurityTTL: duration("commands.security_ttl")},
		LostMode: LostModeConfig{LocationInterval: duration("lost_mode.location_interval")},
	}
	if len(errs) > 0 {
		return nil, errs[0]
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks every value without touching the network (Check also tries the ports).
func (c *Config) Validate() error {
	addrs := []struct{ key, val string }{
		{"broker.tcp_addr", c.Broker.TCPAddr},
		{"broker.ws_addr", c.Broker.WSAddr},
		{"http.addr", c.HTTP.Addr},
	}
	for i, a := range addrs {
		if a.val == "" && a.key != "http.addr" {
			continue
		}
		if err := checkAddr(a.val); err != nil {
			return &Error{Key: a.key, Value: a.val, Reason: "not a host:port address", Err: err}
		}
		for _, b := range addrs[:i] {
			if b.val != "" && b.val == a.val && !strings.HasSuffix(a.val, ":0") {
				return &Error{Key: a.key, Value: a.val, Reason: "same address as " + b.key}
			}
		}
		if c.Broker.AllowAnonymous && strings.HasPrefix(a.key, "broker.") && !isLoopback(a.val) {
			return &Error{Key: "broker.allow_anonymous", Value: "true", Reason: a.key + " " + a.val + " is not a loopback address; anonymous access is for local experiments only"}
		}
	}
	if c.Broker.MaxPacketSize < 1024 || c.Broker.MaxPacketSize > 256*1024*1024 {
		return &Error{Key: "broker.max_packet_size", Value: strconv.Itoa(c.Broker.MaxPacketSize), Reason: "must be between 1024 and 268435456"}
	}
	if c.Broker.MaxConnectPacketSize < 128 || c.Broker.MaxConnectPacketSize > c.Broker.MaxPacketSize {
		return &Error{Key: "broker.max_connect_packet_size", Value: strconv.Itoa(c.Broker.MaxConnectPacketSize), Reason: "must be between 128 and broker.max_packet_size"}
	}
	if c.Broker.ConnectTimeout < time.Second || c.Broker.ConnectTimeout > 5*time.Minute {
		return &Error{Key: "broker.connect_timeout", Value: c.Broker.ConnectTimeout.String(), Reason: "must be between 1s and 5m"}
	}
	if c.Broker.MaxUnackedPublishes < 1 || c.Broker.MaxUnackedPublishes > 65535 {
		return &Error{Key: "broker.max_unacked_publishes", Value: strconv.Itoa(c.Broker.MaxUnackedPublishes), Reason: "must be between 1 and 65535 (MQTT packet IDs)"}
	}
	if c.Store.Path == "" {
		return &Error{Key: "store.path", Value: "", Reason: "must not be empty"}
	}
	if c.Store.Synchronous != "FULL" && c.Store.Synchronous != "NORMAL" {
		return &Error{Key: "store.synchronous", Value: c.Store.Synchronous, Reason: "must be FULL or NORMAL"}
	}
	if c.Store.BusyTimeout <= 0 {
		return &Error{Key: "store.busy_timeout", Value: c.Store.BusyTimeout.String(), Reason: "must be positive"}
	}
	if c.Sync.Retention < 0 {
		return &Error{Key: "sync.retention", Value: c.Sync.Retention.String(), Reason: "must not be negative"}
	}
	if c.Sync.MaxEntries < 0 {
		return &Error{Key: "sync.max_entries", Value: strconv.Itoa(c.Sync.MaxEntries), Reason: "must not be negative"}
	}
	if c.Sync.Window < 1 || c.Sync.Window > 4096 {
		return &Error{Key: "sync.window", Value: strconv.Itoa(c.Sync.Window), Reason: "must be between 1 and 4096 (mochi holds at most 8192 in flight per client)"}
	}
	if c.Commands.TTL < time.Minute {
		return &Error{Key: "commands.ttl", Value: c.Commands.TTL.String(), Reason: "must be at least 1m"}
	}
	if c.Commands.SecurityTTL < time.Minute {
		return &Error{Key: "commands.security_ttl", Value: c.Commands.SecurityTTL.String(), Reason: "must be at least 1m"}
	}
	if c.LostMode.LocationInterval < time.Second || c.LostMode.LocationInterval > 24*time.Hour {
		return &Error{Key: "lost_mode.location_interval", Value: c.LostMode.LocationInterval.String(), Reason: "must be between 1s and 24h"}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		k, v := "tls.key_file", c.TLS.KeyFile
		if c.TLS.CertFile == "" {
			k, v = "tls.cert_file", c.TLS.CertFile
		}
		return &Error{Key: k, Value: v, Reason: "tls.cert_file and tls.key_file must be set together"}
	}
	if c.TLS.Enabled() {
		if _, err := c.TLS.Load(); err != nil {
			return &Error{Key: "tls.cert_file", Value: c.TLS.CertFile, Reason: "cannot load the certificate and key (" + c.TLS.KeyFile + ")", Err: err}
		}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return &Error{Key: "log.level", Value: c.Log.Level, Reason: "must be debug, info, warn or error"}
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return &Error{Key: "log.format", Value: c.Log.Format, Reason: "must be text or json"}
	}
	// Checked whatever the driver, so a value set for later is not found wrong only then.
	if c.Notify.WebhookURL != "" {
		if reason := checkHTTPURL(c.Notify.WebhookURL, true); reason != "" {
			return &Error{Key: "notify.webhook_url", Value: RedactURL(c.Notify.WebhookURL), Reason: reason}
		}
	}
	if reason := checkHTTPURL(c.Notify.PublicURL, false); reason != "" {
		return &Error{Key: "notify.public_url", Value: c.Notify.PublicURL, Reason: reason}
	}
	if c.Notify.SMTP.Port < 1 || c.Notify.SMTP.Port > 65535 {
		return &Error{Key: "notify.smtp.port", Value: strconv.Itoa(c.Notify.SMTP.Port), Reason: "must be between 1 and 65535"}
	}
	switch c.Notify.Driver {
	case "outbox":
	case "webhook":
		if c.Notify.WebhookURL == "" {
			return &Error{Key: "notify.webhook_url", Value: "", Reason: "required by notify.driver=webhook"}
		}
	case "smtp":
		if c.Notify.SMTP.Host == "" || c.Notify.SMTP.From == "" {
			return &Error{Key: "notify.smtp.host", Value: c.Notify.SMTP.Host, Reason: "notify.smtp.host and notify.smtp.from are required by notify.driver=smtp"}
		}
	default:
		return &Error{Key: "notify.driver", Value: c.Notify.Driver, Reason: "must be outbox, smtp or webhook"}
	}
	return nil
}

// Check validates the configuration and also tries to bind every listener address, so a port
// in use is found before the hub starts.
func (c *Config) Check() error {
	if err := c.Validate(); err != nil {
		return err
	}
	for _, a := range []struct{ key, val string }{{"broker.tcp_addr", c.Broker.TCPAddr}, {"broker.ws_addr", c.Broker.WSAddr}, {"http.addr", c.HTTP.Addr}} {
		if a.val == "" {
			continue
		}
		l, err := net.Listen("tcp", a.val)
		if err != nil {
			return &Error{Key: a.key, Value: a.val, Reason: "cannot listen", Err: err}
		}
		l.Close()
	}
	return nil
}

func checkAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return errors.New("port must be a number from 0 to 65535")
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		if strings.ContainsAny(host, " /\\") {
			return errors.New("bad host")
		}
	}
	return nil
}

// checkHTTPURL returns why s is not an absolute http or https URL with a host ("" when it
// is). withQuery allows a query (a gateway URL may carry its key there); the public URL is a
// base that paths are appended to, so it may have neither query nor fragment.
func checkHTTPURL(s string, withQuery bool) string {
	u, err := url.Parse(s)
	if err != nil {
		return "not a URL"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "must be an absolute http:// or https:// URL"
	}
	if u.Host == "" || u.Hostname() == "" {
		return "must name a host"
	}
	if u.Port() != "" {
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			return "port must be a number from 1 to 65535"
		}
	}
	if !withQuery && (u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.Contains(s, "#")) {
		return "must not have a query or fragment"
	}
	return ""
}

// RedactURL hides what in a URL may be a credential: the password of its user info (or the
// whole user info when it has no password: https://KEY@host is a common API-key form), the
// path (gateways such as chat webhooks put their token there) and the value of every query
// parameter. Scheme, user name, host and parameter names stay, to tell what was set. Of text
// that does not parse as an absolute URL, what comes before an '@' and after the first '/',
// '?' or '#' is hidden.
func RedactURL(s string) string {
	const hidden = "[redacted]"
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || (u.Scheme == "" && u.Host == "") {
		scheme, rest, ok := strings.Cut(s, "://")
		if !ok {
			scheme, rest = "", s
		} else {
			scheme += "://"
		}
		if j := strings.LastIndex(rest, "@"); j >= 0 {
			scheme, rest = scheme+hidden+"@", rest[j+1:]
		}
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			rest = rest[:i+1] + hidden
		}
		return scheme + rest
	}
	var b strings.Builder
	b.WriteString(u.Scheme + "://")
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			b.WriteString(u.User.Username() + ":" + hidden + "@")
		} else {
			b.WriteString(hidden + "@")
		}
	}
	b.WriteString(u.Host)
	if u.Path != "" && u.Path != "/" {
		b.WriteString("/" + hidden)
	} else {
		b.WriteString(u.Path)
	}
	if u.RawQuery != "" || u.ForceQuery {
		b.WriteByte('?')
		for i, part := range strings.Split(u.RawQuery, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			name, _, hasValue := strings.Cut(part, "=")
			b.WriteString(name)
			if hasValue {
				b.WriteString("=" + hidden)
			}
		}
	}
	if u.Fragment != "" {
		b.WriteString("#" + hidden)
	}
	return b.String()
}

// isLoopback reports whether a listener address binds only the loopback interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Redacted returns the effective configuration as key/value pairs with secrets hidden.
func (c *Config) Redacted() [][2]string {
	vals := map[string]string{
		"broker.tcp_addr":                c.Broker.TCPAddr,
		"broker.ws_addr":                 c.Broker.WSAddr,
		"broker.allow_anonymous":         strconv.FormatBool(c.Broker.AllowAnonymous),
		"broker.max_packet_size":         strconv.Itoa(c.Broker.MaxPacketSize),
		"broker.max_connect_packet_size": strconv.Itoa(c.Broker.MaxConnectPacketSize),
		"broker.connect_timeout":         c.Broker.ConnectTimeout.String(),
		"broker.max_unacked_publishes":   strconv.Itoa(c.Broker.MaxUnackedPublishes),
		"http.addr":                      c.HTTP.Addr,
		"store.path":                     c.Store.Path,
		"store.synchronous":              c.Store.Synchronous,
		"store.busy_timeout":             c.Store.BusyTimeout.String(),
		"tls.cert_file":                  c.TLS.CertFile,
		"tls.key_file":                   c.TLS.KeyFile,
		"log.level":                      c.Log.Level,
		"log.format":                     c.Log.Format,
		"admin.token":                    c.Admin.Token,
		"notify.driver":                  c.Notify.Driver,
		"notify.webhook_url":             RedactURL(c.Notify.WebhookURL),
		"notify.public_url":              c.Notify.PublicURL,
		"notify.smtp.host":               c.Notify.SMTP.Host,
		"notify.smtp.port":               strconv.Itoa(c.Notify.SMTP.Port),
		"notify.smtp.username":           c.Notify.SMTP.Username,
		"notify.smtp.password":           c.Notify.SMTP.Password,
		"notify.smtp.from":               c.Notify.SMTP.From,
		"sync.retention":                 c.Sync.Retention.String(),
		"sync.max_entries":               strconv.Itoa(c.Sync.MaxEntries),
		"sync.window":                    strconv.Itoa(c.Sync.Window),
		"commands.ttl":                   c.Commands.TTL.String(),
		"commands.security_ttl":          c.Commands.SecurityTTL.String(),
		"lost_mode.location_interval":    c.LostMode.LocationInterval.String(),
	}
	out := make([][2]string, 0, len(keyList()))
	for _, k := range keyList() {
		v := vals[k.name]
		if k.secret && v != "" {
			v = "[redacted]"
		}
		out = append(out, [2]string{k.name, v})
	}
	return out
}

// Default returns the configuration with every default, for tests and the embedded simulator.
func Default() *Config {
	v := viper.New()
	for _, k := range keyList() {
		v.SetDefault(k.name, k.def)
	}
	c, err := fromViper(v)
	if err != nil {
		panic("config defaults do not validate: " + err.Error())
	}
	return c
}
