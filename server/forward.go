package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"sync"
	"time"

	"custody"
	"custody/httpapi"
)

// advertiseAddress returns where the other replicas reach this one: the
// configured address, else the listener's, with this machine's host name
// for an unspecified IP.
func advertiseAddress(configured string, l *net.TCPAddr) (string, error) {
	if configured != "" {
		if _, _, err := net.SplitHostPort(configured); err != nil {
			return "", fmt.Errorf("--advertise-address %q: want host:port: %v", configured, err)
		}
		return configured, nil
	}
	host := l.IP.String()
	if l.IP.IsUnspecified() {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("--advertise-address: the listener's IP is unspecified and the host name is unknown (%v); give one", err)
		}
		host = h
	}
	return net.JoinHostPort(host, strconv.Itoa(l.Port)), nil
}

// maxForwardBuffer is the largest request body a standby reads whole
// before forwarding it; larger ones (which the APIs refuse) stream.
const maxForwardBuffer = 4 << 20

// forwarderRefresh is how long a standby trusts what it read of the active's
// address (a failed forward reads it again at once).
const forwarderRefresh = time.Second

// forwarderPing is how long a connection to the active may be silent before
// the standby pings it, and how long it waits for the answer.
const forwarderPing = 5 * time.Second

// forwarder is a standby's answer to every request but /healthz: a reverse
// proxy to the active replica, over TLS verified against the cluster's CA,
// that keeps the request as the client sent it (host name, path, headers,
// body). The active authenticates the caller itself, as if the client had
// called it directly: its token, Shared Key signature, node credential or
// portal session travel unchanged, and the standby adds no identity of its
// own.
type forwarder struct {
	s *Server

	mu        sync.Mutex
	read      time.Time
	addr      string
	transport *http.Transport
}

// forwarder returns the standby handler (nil on SQLite, which has one
// server only).
func (s *Server) forwarder() http.Handler {
	if s.lease == nil {
		return nil
	}
	return &forwarder{s: s}
}

// active returns the active's address and a transport that dials it.
func (f *forwarder) active(ctx context.Context) (string, *http.Transport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.refresh(ctx); err != nil {
		return "", nil, err
	}
	if f.addr == "" || f.addr == f.s.advertise {
		return "", nil, fmt.Errorf("no active replica is known")
	}
	return f.addr, f.transport, nil
}

// current returns the address of the active as the lease record says ("" if
// none; this replica's own once it is the active).
func (f *forwarder) current(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.refresh(ctx)
	return f.addr, err
}

// refresh reads the lease record again if what was read is older than
// forwarderRefresh. Caller holds f.mu.
func (f *forwarder) refresh(ctx context.Context) error {
	if time.Since(f.read) >= forwarderRefresh {
		rec, _, err := readLeaseRecord(ctx, f.s.DB.SQL())
		if err != nil {
			return err
		}
		f.read = time.Now()
		addr := rec.Address
		if rec.Released {
			addr = ""
		}
		if addr != f.addr {
			if f.transport != nil {
				f.transport.CloseIdleConnections()
			}
			f.addr, f.transport = addr, nil
			if addr != "" {
				d := &net.Dialer{Timeout: 5 * time.Second}
				f.transport = &http.Transport{
					TLSClientConfig: &tls.Config{RootCAs: f.s.caPool, MinVersion: tls.VersionTLS12},
					DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
						return d.DialContext(ctx, network, addr)
					},
					ForceAttemptHTTP2:   true,
					MaxIdleConnsPerHost: 64,
					IdleConnTimeout:     90 * time.Second,
					TLSHandshakeTimeout: 5 * time.Second,
					// An active that froze without closing its connections
					// is given up after an unanswered ping.
					HTTP2: &http.HTTP2Config{SendPingTimeout: forwarderPing, PingTimeout: forwarderPing},
				}
			}
		}
	}
	return nil
}

// forget makes the next request read the active's address again.
func (f *forwarder) forget() {
	f.mu.Lock()
	f.read = time.Time{}
	f.mu.Unlock()
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addr, transport, err := f.active(r.Context())
	if err != nil {
		httpapi.WriteStandbyError(w, r, f.s.Role())
		return
	}
	// The request body is read whole first (up to maxForwardBuffer, the
	// largest any API accepts), so that the active's answer never waits for
	// the client's upload.
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxForwardBuffer+1))
		if err != nil {
			httpapi.WriteError(w, r, custody.Errorf(custody.KindInvalid, "InvalidRequestContent", "The request body could not be read: %v.", err))
			return
		}
		if len(b) <= maxForwardBuffer {
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.ContentLength = int64(len(b))
		} else {
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
		}
	}
	// The answer is the active's, headers included.
	for k := range w.Header() {
		delete(w.Header(), k)
	}
	// A request under way to a former active (one that froze, or lost the
	// lease) is ended once another replica has taken the lease: the
	// client gets a 503 and sends it again.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		t := time.NewTicker(forwarderRefresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if now, err := f.current(ctx); err == nil && now != addr {
				f.s.log.Warn("another replica became the active one; ending a request forwarded to the former", "former", addr, "active", now)
				cancel()
				return
			}
		}
	}()
	r = r.WithContext(ctx)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = pr.In.Host
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			pr.Out.Header.Set(httpapi.ForwardedHeader, f.s.advertise)
		},
		Transport: transport,
		// Long-polls (node syncs, the vaults' change feeds) and file
		// downloads stream as the active writes them.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			f.forget()
			if r.Context().Err() == nil {
				f.s.log.Warn("forward a request to the active replica", "active", addr, "err", err)
			}
			httpapi.WriteStandbyError(w, r, f.s.Role())
		},
		ErrorLog: slog.NewLogLogger(f.s.log.Handler(), slog.LevelWarn),
	}
	proxy.ServeHTTP(w, r)
}
