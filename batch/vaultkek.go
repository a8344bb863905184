package batch

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody"
)

// KeyID is a parsed key identifier: https://{vault host}/keys/{name}[/{version}].
type KeyID struct {
	VaultURL string // https://{vault host}
	Name     string
	Version  string // empty for a versionless identifier
}

// String returns the identifier as Azure writes it.
func (k KeyID) String() string {
	s := k.VaultURL + "/keys/" + k.Name
	if k.Version != "" {
		s += "/" + k.Version
	}
	return s
}

// Versionless returns the identifier without its version.
func (k KeyID) Versionless() KeyID { k.Version = ""; return k }

// VaultName returns the vault's name: the first label of its host.
func (k KeyID) VaultName() string {
	u, _ := url.Parse(k.VaultURL)
	if u == nil {
		return ""
	}
	host := u.Hostname()
	if i := strings.IndexByte(host, '.'); i > 0 {
		return host[:i]
	}
	return host
}

// ParseKeyID parses a key identifier, versioned or versionless.
func ParseKeyID(s string) (KeyID, error) {
	bad := func(why string) (KeyID, error) {
		return KeyID{}, custody.Errorf(custody.KindInvalid, "InvalidKeyIdentifier",
			"The key identifier %q is not valid: %s. Use https://{vault}.vault.{domain}:{port}/keys/{name}/{version}, or leave out /{version} to follow the key's latest version.", s, why)
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" {
		return bad("it is not an absolute URL")
	}
	if u.Scheme != "https" {
		return bad("it must use https")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return bad("it must not carry a query, fragment or user info")
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(segs) < 2 || len(segs) > 3 || segs[0] != "keys" || segs[1] == "" {
		return bad("its path must be /keys/{name} or /keys/{name}/{version}")
	}
	k := KeyID{VaultURL: "https://" + strings.ToLower(u.Host), Name: segs[1]}
	if len(segs) == 3 {
		k.Version = segs[2]
	}
	return k, nil
}

// vaultLabel is the vault name in a vault host: a key vault name.
var vaultLabel = regexp.MustCompile(`^[a-z][a-z0-9-]{1,22}[a-z0-9]$`)

// CheckVaultHost refuses a key identifier whose vault is neither one of this
// server's vaults ({vault}.vault.{Domain}, on the server's port, as the key
// vault writes its key ids) nor on an allowed external vault host with a
// credential (External). It is called before any connection to the vault,
// so that a key identifier cannot make the server connect to a host of the
// caller's choosing.
func (s *Service) CheckVaultHost(id KeyID) error {
	_, err := s.vault(id)
	return err
}

// ownVault reports whether vaultURL is one of this server's vaults.
func (s *Service) ownVault(vaultURL string) bool {
	u, err := url.Parse(vaultURL)
	if err != nil || u.Host == "" || s.Domain == "" {
		return false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	serverPort := s.Port == 0 || s.Port == 443
	label, ok := strings.CutSuffix(host, ".vault."+strings.ToLower(s.Domain))
	if !ok || !vaultLabel.MatchString(label) || strings.Contains(label, "--") {
		return false
	}
	return port == strconv.Itoa(s.Port) || serverPort && (port == "" || port == "443")
}

// vault returns the client that reaches the vault of id: Vault for this
// server's vaults, External's for an allowed external host with a
// credential. Any other host is refused.
func (s *Service) vault(id KeyID) (VaultClient, error) {
	u, err := url.Parse(id.VaultURL)
	if err != nil || u.Host == "" {
		return nil, custody.Errorf(custody.KindInvalid, "InvalidKeyIdentifier", "The key identifier %s has no vault host.", id)
	}
	if s.ownVault(id.VaultURL) {
		return s.Vault, nil
	}
	if s.External.allowed(u.Hostname(), u.Port()) {
		if s.External.credential(u.Hostname(), u.Port()) < 0 || s.External.Vault == nil {
			return nil, custody.Errorf(custody.KindInvalid, "ExternalVaultCredentialMissing",
				"The key identifier %s names the external vault host %s, which is allowed (custody server --external-vault-host) but has no credential to sign in to its tenant. Add a credential for this host (a client secret or federation) to the file given with custody server --external-vault-credentials.",
				id, u.Host)
		}
		return s.External.Vault, nil
	}
	serverPort := s.Port == 0 || s.Port == 443
	return nil, custody.Errorf(custody.KindInvalid, "InvalidKeyIdentifier",
		"The key identifier %s names the vault host %s, which is neither a vault of this server (https://{vault}.vault.%s%s/keys/{name}) nor an external vault host the server is configured to use (custody server --external-vault-host). The server does not connect to other hosts.",
		id, u.Host, s.Domain, map[bool]string{true: "", false: ":" + strconv.Itoa(s.Port)}[serverPort])
}

// KeyInfo is what the vault says about a key version.
type KeyInfo struct {
	KID     KeyID // versioned
	Kty     string
	KeySize int
	Enabled bool
	KeyOps  []string
	NotBefore,
	Expires *time.Time
	// RecoveryLevel is the key's recovery level; one without "Purgeable"
	// means the vault has soft delete and purge protection on.
	RecoveryLevel string
}

// VaultClient reaches customer keys in a key vault on behalf of a managed
// identity. VaultREST is the implementation; tests may use others.
type VaultClient interface {
	GetKey(ctx context.Context, id KeyID, principalID string) (KeyInfo, error)
	WrapKey(ctx context.Context, id KeyID, principalID string, dek []byte) (kid KeyID, wrapped []byte, err error)
	UnwrapKey(ctx context.Context, id KeyID, principalID string, wrapped []byte) ([]byte, error)
}

// TokenFunc issues an access token for a managed identity and resource.
type TokenFunc func(ctx context.Context, principalID, resource string) (token string, expires time.Time, err error)

// VaultREST is a VaultClient that calls the vault's Key Vault REST API with
// the official azkeys client and a token for the managed identity: exactly
// what an outside customer would do, so removing an access policy, disabling
// or deleting the key, or deleting the identity takes effect because the
// vault refuses the call.
type VaultREST struct {
	// Transport carries the requests (it must trust the vault's TLS
	// certificate).
	Transport policy.Transporter
	Token     TokenFunc
	// Credential, if set, replaces Token: it returns the credential that
	// reaches the vault at vaultURL for principalID (keys in external
	// vaults, see ExternalVaults.TokenCredential).
	Credential func(vaultURL, principalID string) (azcore.TokenCredential, error)
	// Timeout bounds each vault call.
	Timeout time.Duration

	mu        sync.Mutex
	clients   map[string]*azkeys.Client
	resources map[string]string // vault URL -> token resource of its challenge
}

type miCredential struct {
	token       TokenFunc
	principalID string
}

func (c miCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(opts.Scopes) != 1 {
		return azcore.AccessToken{}, fmt.Errorf("batch: want one scope, got %v", opts.Scopes)
	}
	tok, exp, err := c.token(ctx, c.principalID, strings.TrimSuffix(opts.Scopes[0], "/.default"))
	if err != nil {
		return azcore.AccessToken{}, err
	}
	// Each vault call gets a fresh token: a cached one would keep working
	// after the identity is deleted, until it expires. Tokens are issued
	// in-process, so this is cheap.
	if now := time.Now(); exp.After(now) {
		exp = now
	}
	return azcore.AccessToken{Token: tok, ExpiresOn: exp}, nil
}

func (v *VaultREST) client(vaultURL, principalID string) (*azkeys.Client, error) {
	key := vaultURL + "|" + principalID
	v.mu.Lock()
	defer v.mu.Unlock()
	if c := v.clients[key]; c != nil {
		return c, nil
	}
	var cred azcore.TokenCredential = miCredential{token: v.Token, principalID: principalID}
	if v.Credential != nil {
		var err error
		if cred, err = v.Credential(vaultURL, principalID); err != nil {
			return nil, err
		}
	}
	c, err := azkeys.NewClient(vaultURL, cred, &azkeys.ClientOptions{
		ClientOptions: policy.ClientOptions{
			Transport: v.Transport,
			Retry:     policy.RetryOptions{MaxRetries: 1, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: time.Second},
		},
	})
	if err != nil {
		return nil, err
	}
	if v.clients == nil {
		v.clients = map[string]*azkeys.Client{}
	}
	v.clients[key] = c
	return c, nil
}

func (v *VaultREST) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	t := v.Timeout
	if t == 0 {
		t = 10 * time.Second
	}
	return context.WithTimeout(ctx, t)
}

// GetKey reads a key version (the latest if id has no version).
func (v *VaultREST) GetKey(ctx context.Context, id KeyID, principalID string) (KeyInfo, error) {
	c, err := v.client(id.VaultURL, principalID)
	if err != nil {
		return KeyInfo{}, &KeyError{Definite: true, Reason: "cannot build a client for " + id.VaultURL + ": " + errText(err), Err: err}
	}
	ctx, cancel := v.withTimeout(ctx)
	defer cancel()
	resp, err := c.GetKey(ctx, id.Name, id.Version, nil)
	if err != nil {
		return KeyInfo{}, classify("get", id, principalID, err)
	}
	info := KeyInfo{Enabled: true}
	if resp.Key != nil {
		if resp.Key.KID != nil {
			kid, perr := ParseKeyID(string(*resp.Key.KID))
			if perr == nil {
				info.KID = kid
			}
		}
		if resp.Key.Kty != nil {
			info.Kty = string(*resp.Key.Kty)
		}
		info.KeySize = len(resp.Key.N) * 8
		for _, op := range resp.Key.KeyOps {
			if op != nil {
				info.KeyOps = append(info.KeyOps, string(*op))
			}
		}
	}
	if a := resp.Attributes; a != nil {
		if a.Enabled != nil {
			info.Enabled = *a.Enabled
		}
		info.NotBefore, info.Expires = a.NotBefore, a.Expires
		if a.RecoveryLevel != nil {
			info.RecoveryLevel = string(*a.RecoveryLevel)
		}
	}
	if info.KID.Name == "" {
		info.KID = id
	}
	return info, nil
}

// WrapKey wraps dek with RSA-OAEP-256 and returns the versioned key id that
// wrapped it.
func (v *VaultREST) WrapKey(ctx context.Context, id KeyID, principalID string, dek []byte) (KeyID, []byte, error) {
	c, err := v.client(id.VaultURL, principalID)
	if err != nil {
		return KeyID{}, nil, &KeyError{Definite: true, Reason: "cannot build a client for " + id.VaultURL + ": " + errText(err), Err: err}
	}
	ctx, cancel := v.withTimeout(ctx)
	defer cancel()
	alg := azkeys.EncryptionAlgorithmRSAOAEP256
	resp, err := c.WrapKey(ctx, id.Name, id.Version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: dek}, nil)
	if err != nil {
		return KeyID{}, nil, classify("wrapKey", id, principalID, err)
	}
	kid := id
	if resp.KID != nil {
		if k, err := ParseKeyID(string(*resp.KID)); err == nil {
			kid = k
		}
	}
	if kid.Version == "" {
		return KeyID{}, nil, &KeyError{Definite: true, Reason: fmt.Sprintf("the vault did not say which version of %s wrapped the key", id)}
	}
	return kid, resp.Result, nil
}

// UnwrapKey unwraps with the exact key version id names.
func (v *VaultREST) UnwrapKey(ctx context.Context, id KeyID, principalID string, wrapped []byte) ([]byte, error) {
	c, err := v.client(id.VaultURL, principalID)
	if err != nil {
		return nil, &KeyError{Definite: true, Reason: "cannot build a client for " + id.VaultURL + ": " + errText(err), Err: err}
	}
	ctx, cancel := v.withTimeout(ctx)
	defer cancel()
	alg := azkeys.EncryptionAlgorithmRSAOAEP256
	resp, err := c.UnwrapKey(ctx, id.Name, id.Version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: wrapped}, nil)
	if err != nil {
		return nil, classify("unwrapKey", id, principalID, err)
	}
	return resp.Result, nil
}

// classify turns a vault call's failure into a KeyError: refusals are
// definite, outages are not.
func classify(op string, id KeyID, principalID string, err error) *KeyError {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		definite := re.StatusCode < 500 && re.StatusCode != 408 && re.StatusCode != 429
		return &KeyError{Definite: definite,
			Reason: fmt.Sprintf("Key Vault refused %s on %s for identity %s: (%s) %s", op, id, principalID, re.ErrorCode, vaultMessage(re)),
			Err:    err}
	}
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) {
		// The external tenant's token service answered: a refusal (a 4xx:
		// the application, its secret or its federated credential is gone
		// or wrong) is definite; anything else is an outage.
		definite := afe.RawResponse != nil && afe.RawResponse.StatusCode >= 400 && afe.RawResponse.StatusCode < 500 &&
			afe.RawResponse.StatusCode != 408 && afe.RawResponse.StatusCode != 429
		return &KeyError{Definite: definite,
			Reason: fmt.Sprintf("the tenant of %s gave no token for identity %s: %s", id.VaultURL, principalID, tokenRefusal(afe)), Err: err}
	}
	var ce *custody.Error
	if errors.As(err, &ce) {
		// The token service refused: the identity is gone.
		return &KeyError{Definite: true, Reason: fmt.Sprintf("no token for identity %s to reach %s: %s", principalID, id, ce.Message), Err: err}
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		// Not definite: a certificate may be renewed or its CA given.
		return &KeyError{Definite: false, Reason: fmt.Sprintf("the TLS certificate of the key vault %s (or of its tenant's token service) is not trusted for %s: %v; an external vault's CA must be among the system roots or in custody server --external-ca-file", id.VaultURL, op, cve.Err), Err: err}
	}
	return &KeyError{Definite: false, Reason: fmt.Sprintf("the key vault %s could not be reached for %s", id.VaultURL, op), Err: err}
}

// errText is err's message, or that of its *custody.Error.
func errText(err error) string {
	var ce *custody.Error
	if errors.As(err, &ce) {
		return ce.Message
	}
	return err.Error()
}

// tokenRefusal is the error description of a token service's refusal, or
// its HTTP status.
func tokenRefusal(afe *azidentity.AuthenticationFailedError) string {
	if afe.RawResponse == nil {
		return "no answer"
	}
	msg := afe.Error()
	if i := strings.Index(msg, `"error_description":`); i >= 0 {
		rest := strings.TrimLeft(msg[i+len(`"error_description":`):], ` "`)
		if j := strings.Index(rest, `"`); j >= 0 {
			return rest[:j]
		}
	}
	return fmt.Sprintf("HTTP %d", afe.RawResponse.StatusCode)
}

// vaultMessage extracts error.message from a vault's error body.
func vaultMessage(re *azcore.ResponseError) string {
	msg := re.Error()
	if i := strings.Index(msg, `"message":`); i >= 0 {
		rest := msg[i+len(`"message":`):]
		rest = strings.TrimLeft(rest, ` "`)
		if j := strings.Index(rest, `"`); j >= 0 {
			return rest[:j]
		}
	}
	return fmt.Sprintf("HTTP %d", re.StatusCode)
}

// VaultChange is one change of a vault's change feed: its kind (as package
// keyvault names them) and, for a key change, the key's name and version.
type VaultChange struct {
	Cursor  string    `json:"cursor"`
	Kind    string    `json:"kind"`
	Key     string    `json:"key"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"`
}

// ChangesPage is one answer of a vault's change feed.
type ChangesPage struct {
	Changes []VaultChange `json:"value"`
	Cursor  string        `json:"cursor"`
	// Missed says that changes after the cursor asked for were lost.
	Missed bool `json:"missed"`
}

// ChangeFeed is implemented by a VaultClient that can follow a vault's
// change feed (a Custody extension of the Key Vault REST API, GET
// /custody/changes). The monitor subscribes when the client has it and
// relies on its periodic probes alone when not.
type ChangeFeed interface {
	// Changes returns the changes after cursor since that principalID may
	// see, waiting up to wait for one; with since "" it returns at once
	// with the current cursor. Refusals are definite KeyErrors.
	Changes(ctx context.Context, vaultURL, principalID, since string, wait time.Duration) (ChangesPage, error)
}

var _ ChangeFeed = (*VaultREST)(nil)

// Changes calls GET {vaultURL}/custody/changes with a token for
// principalID, found the way azkeys finds it: the vault's 401 challenge
// names the token's resource, which must be a parent domain of the vault.
func (v *VaultREST) Changes(ctx context.Context, vaultURL, principalID, since string, wait time.Duration) (ChangesPage, error) {
	u := vaultURL + "/custody/changes?api-version=7.5&timeout=" + strconv.Itoa(int(wait/time.Second))
	if since != "" {
		u += "&since=" + url.QueryEscape(since)
	}
	ctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
	defer cancel()
	do := func(token string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return v.Transport.Do(req)
	}
	v.mu.Lock()
	resource := v.resources[vaultURL]
	v.mu.Unlock()
	for attempt := 0; attempt < 2; attempt++ {
		token := ""
		if resource != "" {
			tok, _, err := v.Token(ctx, principalID, resource)
			if err != nil {
				var ce *custody.Error
				return ChangesPage{}, &KeyError{Definite: errors.As(err, &ce), Reason: fmt.Sprintf("no token for identity %s to reach %s", principalID, vaultURL), Err: err}
			}
			token = tok
		}
		resp, err := do(token)
		if err != nil {
			return ChangesPage{}, &KeyError{Reason: "the key vault " + vaultURL + " could not be reached for its change feed", Err: err}
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if err != nil {
			return ChangesPage{}, &KeyError{Reason: "the change feed of " + vaultURL + " broke off", Err: err}
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			r := challengeResource(resp.Header.Get("WWW-Authenticate"))
			if r == "" || !resourceCovers(r, vaultURL) {
				return ChangesPage{}, &KeyError{Definite: true, Reason: "the vault " + vaultURL + " named no acceptable token resource"}
			}
			resource = r
			v.mu.Lock()
			if v.resources == nil {
				v.resources = map[string]string{}
			}
			v.resources[vaultURL] = r
			v.mu.Unlock()
			continue
		}
		if resp.StatusCode != http.StatusOK {
			definite := resp.StatusCode < 500 && resp.StatusCode != 408 && resp.StatusCode != 429
			return ChangesPage{}, &KeyError{Definite: definite,
				Reason: fmt.Sprintf("Key Vault refused the change feed of %s for identity %s: HTTP %d", vaultURL, principalID, resp.StatusCode)}
		}
		var p ChangesPage
		if err := json.Unmarshal(body, &p); err != nil {
			return ChangesPage{}, &KeyError{Reason: "the change feed of " + vaultURL + " answered something else", Err: err}
		}
		return p, nil
	}
	return ChangesPage{}, &KeyError{Definite: true, Reason: "the vault " + vaultURL + " refused every token for its change feed"}
}

// challengeResource returns the resource of a Bearer challenge.
func challengeResource(h string) string {
	for _, part := range strings.Split(h, ",") {
		part = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(part), "Bearer "))
		if r, ok := strings.CutPrefix(part, "resource="); ok {
			return strings.Trim(r, `"`)
		}
	}
	return ""
}

// resourceCovers reports whether a token resource (https://vault.{domain})
// is a parent domain of the vault's host, as azkeys checks.
func resourceCovers(resource, vaultURL string) bool {
	r, err1 := url.Parse(resource)
	vu, err2 := url.Parse(vaultURL)
	if err1 != nil || err2 != nil || r.Hostname() == "" {
		return false
	}
	return strings.HasSuffix(strings.ToLower(vu.Hostname()), "."+strings.ToLower(r.Hostname()))
}
