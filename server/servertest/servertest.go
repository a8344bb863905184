// Package servertest starts a real Custody server in-process for tests: TLS
// on a random loopback port, a temporary data directory, SQLite unless the
// test sets Config.Database, and an HTTP client that trusts the server's CA
// and dials the listener for every *.{domain} name.
package servertest

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"custody/node/sandbox"
	"custody/server"
	"custody/tlsca"
)

// TestServer is a running in-process server.
type TestServer struct {
	*server.Server
	// Client trusts the server's CA and dials the server for every host
	// name under its domain.
	Client *http.Client
	// CAPool verifies the server's certificate.
	CAPool *x509.CertPool
	cancel context.CancelFunc
	done   chan error
}

// New starts a server for the duration of the test and returns once it is
// the active replica (at once on SQLite; on PostgreSQL once it holds the
// cluster's lease). fn, if not nil, may change the configuration first.
func New(t testing.TB, fn func(*server.Config)) *TestServer {
	t.Helper()
	ts := NewReplica(t, fn)
	deadline := time.Now().Add(30 * time.Second)
	for ts.Role() != "active" {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not become the active replica within 30 s (another replica of its database holds the lease?)")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ts
}

// NewReplica starts a server for the duration of the test and returns as
// soon as it serves, standby or active.
func NewReplica(t testing.TB, fn func(*server.Config)) *TestServer {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("CUSTODY_TEST_VERBOSE") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if fn != nil {
		fn(&cfg)
	}
	if !cfg.DisableLocalNodes && !cfg.UnsafeSharedHostNodes {
		// Outside CI (which runs as root and must sandbox for real), a host
		// that cannot sandbox tasks runs the other tests' local nodes
		// unsafely; the sandbox's own tests skip there.
		if _, err := sandbox.Probe(); err != nil && os.Getenv("CI") == "" {
			t.Logf("local nodes run without a sandbox: %v", err)
			cfg.UnsafeSharedHostNodes = true
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.Open(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("open server: %v", err)
	}
	pool, err := tlsca.LoadPool(cfg.DataDir)
	if err != nil {
		cancel()
		t.Fatalf("load CA: %v", err)
	}
	ts := &TestServer{Server: s, CAPool: pool, cancel: cancel, done: make(chan error, 1)}
	ts.Client = &http.Client{Transport: Transport(pool, s.Endpoint.Domain, s.Endpoint.Address), Timeout: 60 * time.Second}
	go func() { ts.done <- s.Serve(ctx) }()
	t.Cleanup(ts.Close)
	return ts
}

// Close stops the server and waits for it.
func (ts *TestServer) Close() { _ = ts.Stop() }

// Stop shuts the server down as SIGTERM does and returns what Serve
// returned (an error if the graceful shutdown did not finish in time).
func (ts *TestServer) Stop() error {
	if ts.cancel == nil {
		return nil
	}
	ts.cancel()
	var err error
	select {
	case err = <-ts.done:
	case <-time.After(15 * time.Second):
		err = errors.New("the server did not stop within 15 s")
	}
	ts.Server.Close()
	ts.cancel = nil
	return err
}

// Transport returns an HTTP transport that trusts pool and dials addr for
// every name under domain (see server.Transport).
func Transport(pool *x509.CertPool, domain, addr string) *http.Transport {
	return server.Transport(pool, domain, addr)
}

// URL returns https://{name}.{domain}:{port}, or https://{domain}:{port} for
// an empty name.
func (ts *TestServer) URL(name string) string {
	h := ts.Endpoint.Domain
	if name != "" {
		h = name + "." + h
	}
	return "https://" + h + ":" + itoa(ts.Endpoint.Port)
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
