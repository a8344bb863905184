package batch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"custody"
)

// Keys in vaults outside this server.
//
// An account's key identifier may name a vault on a host the operator
// allows (ExternalVaults.Hosts), reached with the official azkeys client
// over TLS verified against the system roots or an operator-given CA
// bundle, with a token from the external tenant. Each allowed host needs an
// ExternalCredential: a client secret of an application in that tenant, or
// workload identity federation, where this server's token service signs an
// assertion for the account's managed identity that the application's
// federated credential trusts. Keys there follow the same lifecycle as keys
// in this server's vaults, with one difference: there is no change feed, so
// the monitor's periodic probes find revocations and restorations.

// ExternalCredential is how the server signs in to the tenant of external
// vaults: one application of that tenant, with a client secret or a
// federated credential.
type ExternalCredential struct {
	// Hosts are the vault host patterns this credential serves (as in
	// ExternalVaults.Hosts); the first credential that matches a vault's
	// host is used.
	Hosts []string `json:"hosts"`
	// Authority is the tenant's token service (default
	// https://login.microsoftonline.com/).
	Authority string `json:"authority,omitempty"`
	TenantID  string `json:"tenantId"`
	ClientID  string `json:"clientId"`
	// ClientSecret, or ClientSecretFile naming a file that holds it, signs
	// in with a client secret.
	ClientSecret     string `json:"clientSecret,omitempty"`
	ClientSecretFile string `json:"clientSecretFile,omitempty"`
	// Federation, if set, signs in with an assertion this server signs.
	Federation *Federation `json:"federation,omitempty"`
}

// Federation says what the assertion this server signs carries.
type Federation struct {
	// Subject is the assertion's sub claim; empty means the object id of
	// the account's managed identity, so that the external tenant trusts
	// each identity by its own federated credential.
	Subject string `json:"subject,omitempty"`
	// Audience is the assertion's aud claim (default
	// api://AzureADTokenExchange).
	Audience string `json:"audience,omitempty"`
}

// DefaultAuthority is the token service of Azure's public cloud.
const DefaultAuthority = "https://login.microsoftonline.com/"

// ExternalVaults reaches keys in vaults outside this server.
type ExternalVaults struct {
	// Hosts are the allowed vault hosts: "host", "host:port", or a pattern
	// whose first label is "*" (matching exactly one label), as in
	// "*.vault.azure.net". Without a port only 443 matches.
	Hosts []string
	// Credentials sign in to the tenants of the allowed hosts.
	Credentials []ExternalCredential
	// Transport carries requests to the external vaults and token
	// services; it verifies their certificates.
	Transport policy.Transporter
	// Assertion signs a federation assertion for a managed identity (see
	// identity.Service.FederationAssertion).
	Assertion func(ctx context.Context, principalID, subject, audience string) (string, error)
	// Vault is the client for external vaults: a VaultREST whose
	// Credential is TokenCredential.
	Vault VaultClient
	// IdentityExists fails (with a *custody.Error) when the managed
	// identity principalID no longer exists: its accounts then reach no
	// external key, whatever the external tenant's token cache says.
	IdentityExists func(ctx context.Context, principalID string) error

	mu    sync.Mutex
	creds map[string]azcore.TokenCredential // by credential index and, for federation, identity
}

// Validate checks the configuration: well-formed host patterns, and
// credentials with a tenant, a client, exactly one way to sign in, and
// hosts that are all allowed. Secrets are read from their files.
func (e *ExternalVaults) Validate(readFile func(string) ([]byte, error)) error {
	for _, h := range e.Hosts {
		if err := checkHostPattern(h); err != nil {
			return fmt.Errorf("--external-vault-host %q: %w", h, err)
		}
	}
	for i := range e.Credentials {
		c := &e.Credentials[i]
		name := fmt.Sprintf("external vault credential %d (tenant %q, client %q)", i+1, c.TenantID, c.ClientID)
		if c.TenantID == "" || c.ClientID == "" {
			return fmt.Errorf("%s: tenantId and clientId are required", name)
		}
		if len(c.Hosts) == 0 {
			return fmt.Errorf("%s: hosts lists no vault host", name)
		}
		for _, h := range c.Hosts {
			if err := checkHostPattern(h); err != nil {
				return fmt.Errorf("%s: host %q: %w", name, h, err)
			}
			if !e.covers(h) {
				return fmt.Errorf("%s: host %q is not an allowed external vault host; add --external-vault-host %s", name, h, h)
			}
		}
		if c.Authority == "" {
			c.Authority = DefaultAuthority
		}
		if u, err := url.Parse(c.Authority); err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("%s: authority %q must be an https URL such as %s", name, c.Authority, DefaultAuthority)
		}
		if !strings.HasSuffix(c.Authority, "/") {
			c.Authority += "/"
		}
		n := 0
		if c.ClientSecret != "" {
			n++
		}
		if c.ClientSecretFile != "" {
			n++
			b, err := readFile(c.ClientSecretFile)
			if err != nil {
				return fmt.Errorf("%s: read clientSecretFile: %w", name, err)
			}
			c.ClientSecret, c.ClientSecretFile = strings.TrimSpace(string(b)), ""
			if c.ClientSecret == "" {
				return fmt.Errorf("%s: its clientSecretFile is empty", name)
			}
		}
		if c.Federation != nil {
			n++
		}
		if n != 1 {
			return fmt.Errorf("%s: give exactly one of clientSecret, clientSecretFile and federation", name)
		}
	}
	return nil
}

// checkHostPattern checks a host pattern's form.
func checkHostPattern(p string) error {
	host, port := splitPattern(p)
	if host == "" {
		return errors.New("no host")
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return errors.New("the port is not a number from 1 to 65535")
		}
	}
	labels := strings.Split(host, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) >= 3 {
			continue
		}
		if l == "" || strings.ContainsAny(l, "*/\\@?#[] ") {
			return errors.New(`a host is a DNS name (or "*." and a name of at least two labels)`)
		}
	}
	return nil
}

func splitPattern(p string) (host, port string) {
	p = strings.ToLower(strings.TrimSpace(p))
	if h, pt, err := net.SplitHostPort(p); err == nil {
		return h, pt
	}
	return p, ""
}

func containsPattern(list []string, p string) bool {
	h, pt := splitPattern(p)
	for _, q := range list {
		qh, qp := splitPattern(q)
		if qh == h && (qp == pt || qp == "" && pt == "443" || qp == "443" && pt == "") {
			return true
		}
	}
	return false
}

// covers reports whether every host pattern p matches is allowed.
func (e *ExternalVaults) covers(p string) bool {
	h, port := splitPattern(p)
	if strings.HasPrefix(h, "*.") {
		return containsPattern(e.Hosts, p)
	}
	return e.allowed(h, port)
}

// hostMatches reports whether a vault at host and port (empty: 443)
// matches pattern.
func hostMatches(pattern, host, port string) bool {
	ph, pp := splitPattern(pattern)
	if pp == "" {
		pp = "443"
	}
	if port == "" {
		port = "443"
	}
	if pp != port {
		return false
	}
	host = strings.ToLower(host)
	if rest, ok := strings.CutPrefix(ph, "*."); ok {
		label, suffix, found := strings.Cut(host, ".")
		return found && label != "" && suffix == rest
	}
	return host == ph
}

// allowed reports whether vaultURL's host is an allowed external vault
// host.
func (e *ExternalVaults) allowed(host, port string) bool {
	if e == nil {
		return false
	}
	for _, p := range e.Hosts {
		if hostMatches(p, host, port) {
			return true
		}
	}
	return false
}

// credential returns the index of the credential for host and port, or -1.
func (e *ExternalVaults) credential(host, port string) int {
	for i, c := range e.Credentials {
		for _, p := range c.Hosts {
			if hostMatches(p, host, port) {
				return i
			}
		}
	}
	return -1
}

// TokenCredential returns the credential that reaches the vault at
// vaultURL for the managed identity principalID. Tokens are cached by the
// credential until shortly before they expire, as azidentity does; the
// identity's existence is checked on every request.
func (e *ExternalVaults) TokenCredential(vaultURL, principalID string) (azcore.TokenCredential, error) {
	u, err := url.Parse(vaultURL)
	if err != nil {
		return nil, err
	}
	i := e.credential(u.Hostname(), u.Port())
	if i < 0 {
		return nil, custody.Errorf(custody.KindInvalid, "ExternalVaultCredentialMissing",
			"No credential is configured for the external vault host %s (custody server --external-vault-credentials).", u.Host)
	}
	c := e.Credentials[i]
	key := fmt.Sprint(i)
	if c.Federation != nil {
		// The assertion is signed for this identity (whatever its
		// subject), so each identity has its own credential and tokens.
		key += "|" + principalID
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.creds == nil {
		e.creds = map[string]azcore.TokenCredential{}
	}
	inner := e.creds[key]
	if inner == nil {
		opts := azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: c.Authority},
			Transport: e.Transport,
			Retry:     policy.RetryOptions{MaxRetries: 1, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: time.Second},
		}
		if c.Federation != nil {
			fed := *c.Federation
			inner, err = azidentity.NewClientAssertionCredential(c.TenantID, c.ClientID, func(ctx context.Context) (string, error) {
				return e.Assertion(ctx, principalID, fed.Subject, fed.Audience)
			}, &azidentity.ClientAssertionCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		} else {
			inner, err = azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, c.ClientSecret,
				&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
		}
		if err != nil {
			return nil, err
		}
		e.creds[key] = inner
	}
	return identityBound{inner: inner, principalID: principalID, exists: e.IdentityExists}, nil
}

// identityBound is a credential that gives no token once the managed
// identity it acts for is gone.
type identityBound struct {
	inner       azcore.TokenCredential
	principalID string
	exists      func(ctx context.Context, principalID string) error
}

func (c identityBound) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if c.exists != nil {
		if err := c.exists(ctx, c.principalID); err != nil {
			return azcore.AccessToken{}, err
		}
	}
	tok, err := c.inner.GetToken(ctx, opts)
	if err != nil {
		return tok, err
	}
	// The client's pipeline asks again before each request (the inner
	// credential answers from its cache), so that the check above runs on
	// every call.
	if now := time.Now(); tok.ExpiresOn.After(now) {
		tok.ExpiresOn = now
	}
	return tok, nil
}
