package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/devicehub/devicehub/app"
	"github.com/devicehub/devicehub/app/apptest"
	"github.com/devicehub/devicehub/config"
)

// selfSigned writes a fresh self-signed certificate for 127.0.0.1 and its key as PEM files in
// dir and returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "devicehub test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLS: with tls.cert_file and tls.key_file set, MQTT over TCP, MQTT over WebSocket and
// HTTP all speak TLS with that certificate (a client that trusts only it gets through), and a
// plain-text client is not served.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	h := apptest.Start(t, func(c *config.Config) {
		c.Broker.AllowAnonymous = true
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
	})
	clientTLS := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	for _, tc := range []struct{ name, url string }{
		{"mqtt over tls", "tls://" + h.MQTTAddr()},
		{"mqtt over wss", "wss://" + h.WSAddr() + "/mqtt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.ReplaceAll(tc.name, " ", "-")
			got := make(chan string, 1)
			sub := tlsClient(t, tc.url, "sub-"+id, clientTLS)
			wait(t, sub.Subscribe("tls/"+id, 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }))
			pub := tlsClient(t, tc.url, "pub-"+id, clientTLS)
			wait(t, pub.Publish("tls/"+id, 1, false, "secret "+id))
			select {
			case m := <-got:
				if m != "secret "+id {
					t.Fatalf("got %q", m)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("message not delivered")
			}
		})
	}

	t.Run("https healthz", func(t *testing.T) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS}}
		resp, err := c.Get("https://" + h.HTTPAddr() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(b) != "ok\n" || resp.TLS == nil {
			t.Fatalf("GET /healthz over TLS: %d %q (tls %v)", resp.StatusCode, b, resp.TLS != nil)
		}
	})

	t.Run("plain text refused", func(t *testing.T) {
		// A client that does not speak TLS gets no CONNACK from the TLS listener.
		if _, err := connect(t, "tcp://"+h.MQTTAddr(), "plain", true, nil); err == nil {
			t.Fatal("plain-text MQTT CONNECT accepted on the TLS listener")
		}
		resp, err := apptest.Get(t, "http://"+h.HTTPAddr()+"/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatal("plain-text HTTP served on the TLS listener")
			}
		}
	})
}

func tlsClient(t *testing.T, url, id string, tlsCfg *tls.Config) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetTLSConfig(tlsCfg).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	wait(t, c.Connect())
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// TestTLSUnreadableCertificate: a certificate that cannot be loaded stops the start with a
// *config.Error naming tls.cert_file and its value, before the database is created.
func TestTLSUnreadableCertificate(t *testing.T) {
	dir := t.TempDir()
	_, keyFile, _ := selfSigned(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, cert string }{
		{"missing file", filepath.Join(dir, "no-such-cert.pem")},
		{"not a certificate", garbage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := apptest.Config(t.TempDir())
			cfg.TLS.CertFile, cfg.TLS.KeyFile = tc.cert, keyFile
			a, err := app.New(context.Background(), cfg, nil)
			if err == nil {
				_ = a.Shutdown(context.Background())
				t.Fatal("hub started with an unreadable certificate")
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != "tls.cert_file" || ce.Value != tc.cert {
				t.Fatalf("want a config error naming tls.cert_file=%s, got %#v (%v)", tc.cert, ce, err)
			}
			if msg := err.Error(); !strings.Contains(msg, "tls.cert_file") || !strings.Contains(msg, tc.cert) {
				t.Errorf("message %q does not name the key and value", msg)
			}
			if _, err := os.Stat(cfg.Store.Path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("database created before the certificate was checked: %v", err)
			}
		})
	}
}
