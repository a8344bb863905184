package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strings"
	"time"
)

// Transport returns an HTTP transport that trusts pool and sends every
// connection for domain, its subdomains, localhost and loopback to addr, so
// clients need no DNS for *.{domain}.
func Transport(pool *x509.CertPool, domain, addr string) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second}
	domain = strings.ToLower(domain)
	return &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				return nil, err
			}
			h := strings.ToLower(host)
			if h == domain || strings.HasSuffix(h, "."+domain) || h == "localhost" || h == "127.0.0.1" {
				return d.DialContext(ctx, network, addr)
			}
			return d.DialContext(ctx, network, a)
		},
		MaxIdleConnsPerHost: 64,
		ForceAttemptHTTP2:   true,
		IdleConnTimeout:     90 * time.Second,
		// A replica that froze accepts connections (its kernel does) but
		// never finishes a handshake.
		TLSHandshakeTimeout: 5 * time.Second,
		// A replica that froze without closing its connections is given
		// up after an unanswered ping: the call fails instead of waiting
		// for the client's own timeout, and the next goes out on a new
		// connection.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 5 * time.Second, PingTimeout: 5 * time.Second},
	}
}
