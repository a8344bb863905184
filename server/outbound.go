package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"custody/batch"
)

// outboundClient returns the HTTP client for connections to parties
// outside this server: external key vaults, their tenants' token services
// and the issuers federated credentials trust. Their certificates are
// verified against the system roots, or only against the CA bundle
// cfg.ExternalCAFile names. cfg.Resolve sends connections for a host:port
// to another address, as curl's --resolve does; names are verified as
// usual.
func outboundClient(cfg Config) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.ExternalCAFile != "" {
		pem, err := os.ReadFile(cfg.ExternalCAFile)
		if err != nil {
			return nil, fmt.Errorf("--external-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--external-ca-file %s holds no PEM certificate", cfg.ExternalCAFile)
		}
		tc.RootCAs = pool
	}
	resolve := map[string]string{}
	for from, to := range cfg.Resolve {
		h, p, err := net.SplitHostPort(from)
		if err != nil || h == "" || p == "" {
			return nil, fmt.Errorf("--resolve %s: want host:port:address", from)
		}
		if _, _, err := net.SplitHostPort(to); err != nil {
			to = net.JoinHostPort(strings.Trim(to, "[]"), p)
		}
		resolve[strings.ToLower(net.JoinHostPort(h, p))] = to
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tc,
		Proxy:           http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := resolve[strings.ToLower(addr)]; ok {
				addr = to
			}
			return d.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}}, nil
}

// ParseResolve parses curl's --resolve form, host:port:address.
func ParseResolve(s string) (from, to string, err error) {
	host, rest, ok := strings.Cut(s, ":")
	port, addr, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || host == "" || port == "" || addr == "" {
		return "", "", fmt.Errorf("--resolve %q: want host:port:address", s)
	}
	return net.JoinHostPort(host, port), addr, nil
}

// externalVaults builds the configuration of external vaults from cfg:
// the allowed hosts and the credentials, those of the file
// cfg.ExternalVaultCredentialsFile after cfg.ExternalVaultCredentials.
func externalVaults(cfg Config) (*batch.ExternalVaults, error) {
	creds := append([]batch.ExternalCredential{}, cfg.ExternalVaultCredentials...)
	if cfg.ExternalVaultCredentialsFile != "" {
		b, err := os.ReadFile(cfg.ExternalVaultCredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("--external-vault-credentials: %w", err)
		}
		var file struct {
			Credentials []batch.ExternalCredential `json:"credentials"`
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&file); err != nil {
			return nil, fmt.Errorf("--external-vault-credentials %s: %w", cfg.ExternalVaultCredentialsFile, err)
		}
		creds = append(creds, file.Credentials...)
	}
	e := &batch.ExternalVaults{Hosts: cfg.ExternalVaultHosts, Credentials: creds}
	if err := e.Validate(os.ReadFile); err != nil {
		return nil, err
	}
	return e, nil
}

// credentialsFileWarning says so when the external vault credentials file
// holds a client secret and other users may read it.
func credentialsFileWarning(name string) string {
	if name == "" {
		return ""
	}
	st, err := os.Stat(name)
	if err != nil || st.Mode().Perm()&0o077 == 0 {
		return ""
	}
	b, err := os.ReadFile(name)
	if err != nil || !strings.Contains(string(b), `"clientSecret"`) {
		return ""
	}
	return fmt.Sprintf("the external vault credentials file %s holds a client secret and other users may read it (mode %v): chmod 600 it, or keep the secret in a clientSecretFile only the server reads", name, st.Mode().Perm())
}
