package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"custody/server"
)

// API versions the CLI sends; the server accepts these (and az sends them).
const (
	apiResources     = "2021-04-01"
	apiIdentities    = "2023-01-31"
	apiAuthorization = "2022-04-01"
)

// Token scopes, as Azure names them; the server maps them to its own
// audiences.
const (
	scopeManagement = "https://management.azure.com/.default"
	scopeGraph      = "https://graph.microsoft.com/.default"
)

// Error is a failure reported by the server: an ARM or Graph error body
// ({"error":{"code","message"}}) or an OAuth error from the token service
// (error, error_description). It prints as az does: (Code) message.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return "(" + e.Code + ") " + e.Message }

// isStatus reports whether err is an *Error with the HTTP status code.
func isStatus(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == code
}

// isCode reports whether err is an *Error with the error code.
func isCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && strings.EqualFold(e.Code, code)
}

// decodeError turns a non-2xx response into an *Error.
func decodeError(resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode}
	var arm struct {
		Error json.RawMessage `json:"error"`
		Desc  string          `json:"error_description"`
	}
	if json.Unmarshal(body, &arm) == nil && len(arm.Error) > 0 {
		var inner struct{ Code, Message string }
		var code string
		switch {
		case json.Unmarshal(arm.Error, &inner) == nil && inner.Code != "":
			e.Code, e.Message = inner.Code, inner.Message
		case json.Unmarshal(arm.Error, &code) == nil && code != "":
			e.Code, e.Message = code, arm.Desc
		}
	}
	if e.Code == "" {
		e.Code, e.Message = batchErrorBody(body)
	}
	if e.Code == "" {
		e.Code = resp.Header.Get("x-ms-error-code")
	}
	if e.Code == "" {
		e.Code = strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "")
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("%s %s answered %s.", resp.Request.Method, resp.Request.URL.Redacted(), resp.Status)
	}
	return e
}

// batchErrorBody reads the Batch data plane's error shape,
// {"code", "message": {"lang", "value"}, "values": [{"key", "value"}]}, as
// az prints it: the message, then one "key: value" line per detail.
func batchErrorBody(body []byte) (code, msg string) {
	var be struct {
		Code    string          `json:"code"`
		Message json.RawMessage `json:"message"`
		Values  []struct {
			Key, Value string
		} `json:"values"`
	}
	if json.Unmarshal(body, &be) != nil || be.Code == "" {
		return "", ""
	}
	var m struct{ Value string }
	if json.Unmarshal(be.Message, &m) != nil || m.Value == "" {
		_ = json.Unmarshal(be.Message, &msg)
	} else {
		msg = m.Value
	}
	for _, d := range be.Values {
		msg += "\n" + d.Key + ": " + d.Value
	}
	return be.Code, msg
}

// credentials are what the CLI signs in with: a service principal of the
// server's tenant, and the subscription commands act on by default.
type credentials struct {
	TenantID         string `json:"tenantId"`
	ClientID         string `json:"clientId"`
	ClientSecret     string `json:"clientSecret"`
	SubscriptionID   string `json:"subscriptionId"`
	SubscriptionName string `json:"subscriptionName,omitempty"`
}

// client talks to one Custody server: it knows where the server is (from
// server.json), trusts only the server's CA, and gets and caches tokens for
// the duration of one command.
type client struct {
	ep     server.Endpoint
	http   *http.Client
	cred   credentials
	debug  io.Writer // nil: no request log
	tokens map[string]string
}

// loadEndpoint reads {dataDir}/server.json.
func loadEndpoint(dataDir string) (server.Endpoint, error) {
	var ep server.Endpoint
	path := filepath.Join(dataDir, server.EndpointFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ep, fmt.Errorf("no Custody server has run with data directory %s (%s is missing). Is `custody server` running? Start it with `custody server --data-dir %s`, or point the CLI at its data directory with --data-dir or CUSTODY_DATA_DIR.", dataDir, path, dataDir)
	}
	if err != nil {
		return ep, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &ep); err != nil || ep.Address == "" || ep.Domain == "" || ep.Port == 0 {
		return ep, fmt.Errorf("%s is not a valid server description (want address, domain, port and caFile); restart `custody server` to rewrite it.", path)
	}
	if ep.CAFile == "" {
		ep.CAFile = filepath.Join(dataDir, "ca.pem")
	}
	return ep, nil
}

// newClient builds a client for the server described in dataDir.
func newClient(dataDir string, cred credentials, debug io.Writer) (*client, error) {
	ep, err := loadEndpoint(dataDir)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(ep.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read the server's CA certificate: %w. Is `custody server` running with data directory %s?", err, dataDir)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate; restart `custody server` to recreate it.", ep.CAFile)
	}
	return &client{
		ep:     ep,
		http:   &http.Client{Transport: server.Transport(pool, ep.Domain, ep.Address), Timeout: 2 * time.Minute},
		cred:   cred,
		debug:  debug,
		tokens: map[string]string{},
	}, nil
}

// url returns https://{name}.{domain}:{port}.
func (c *client) url(name string) string {
	return endpointURL(c.ep, name)
}

func endpointURL(ep server.Endpoint, name string) string {
	h := name + "." + ep.Domain
	if ep.Port == 443 {
		return "https://" + h
	}
	return "https://" + h + ":" + strconv.Itoa(ep.Port)
}

// do sends one request and logs it when --debug is on. Connection failures
// become an error that says how to start the server.
func (c *client) do(req *http.Request) (*http.Response, []byte, error) {
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		if c.debug != nil {
			fmt.Fprintf(c.debug, "DEBUG: %s %s: %v\n", req.Method, req.URL.Redacted(), err)
		}
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, nil, ctxErr
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, nil, fmt.Errorf("cannot reach the Custody server at %s (%s): %v. Is `custody server` running? Start it with `custody server`, and use the same --data-dir (or CUSTODY_DATA_DIR) here.", c.url(hostLabel(req.URL.Host)), c.ep.Address, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if c.debug != nil {
		fmt.Fprintf(c.debug, "DEBUG: %s %s -> %d (%s)\n", req.Method, req.URL.Redacted(), resp.StatusCode, time.Since(start).Round(time.Millisecond))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read the answer to %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	return resp, body, nil
}

// hostLabel returns the first label of a host name ("management").
func hostLabel(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	label, _, _ := strings.Cut(host, ".")
	return label
}

// token returns an access token for scope, from the cache or the token
// service (client credentials grant).
func (c *client) token(ctx context.Context, scope string) (string, error) {
	if t, ok := c.tokens[scope]; ok {
		return t, nil
	}
	if c.cred.ClientID == "" || c.cred.ClientSecret == "" || c.cred.TenantID == "" {
		return "", errors.New("no credentials: run `custody login --service-principal -u CLIENT_ID -p SECRET --tenant TENANT`")
	}
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {c.cred.ClientID},
		"client_secret": {c.cred.ClientSecret},
		"scope":         {scope},
	}
	u := c.url("login") + "/" + url.PathEscape(c.cred.TenantID) + "/oauth2/v2.0/token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, body, err := c.do(req)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", decodeError(resp, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("the token service answered without an access token")
	}
	c.tokens[scope] = tok.AccessToken
	return tok.AccessToken, nil
}

// call sends a JSON request to base+path (path may carry a query) with a
// token for scope and decodes a JSON answer into a generic value. It returns
// the response too, for status and headers; non-2xx answers are *Error.
func (c *client) call(ctx context.Context, method, rawURL, scope string, in any) (any, *http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return nil, nil, err
	}
	tok, err := c.token(ctx, scope)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, b, err := c.do(req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, resp, decodeError(resp, b)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, resp, nil
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, resp, fmt.Errorf("%s %s answered with a body that is not JSON: %w", method, req.URL.Redacted(), err)
	}
	return out, resp, nil
}

// arm calls the resource manager: path is a resource path such as
// /subscriptions/{id}/resourcegroups/rg1, apiVersion is added as a query
// parameter (query may add more, already encoded).
func (c *client) arm(ctx context.Context, method, path, apiVersion string, query url.Values, in any) (any, *http.Response, error) {
	q := url.Values{"api-version": {apiVersion}}
	for k, v := range query {
		q[k] = v
	}
	return c.call(ctx, method, c.url("management")+escapePath(path)+"?"+q.Encode(), scopeManagement, in)
}

// graph calls the directory (Microsoft Graph subset) at /v1.0{path}.
func (c *client) graph(ctx context.Context, method, path string, query url.Values, in any) (any, error) {
	u := c.url("graph") + "/v1.0" + escapePath(path)
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	out, _, err := c.call(ctx, method, u, scopeGraph, in)
	return out, err
}

// escapePath escapes each segment of a slash-separated path.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// armList follows an ARM list's nextLink pages and returns all values.
func (c *client) armList(ctx context.Context, path, apiVersion string, query url.Values) ([]any, error) {
	out, _, err := c.arm(ctx, http.MethodGet, path, apiVersion, query, nil)
	if err != nil {
		return nil, err
	}
	var all []any
	for {
		page, _ := out.(map[string]any)
		vals, _ := page["value"].([]any)
		all = append(all, vals...)
		next, _ := page["nextLink"].(string)
		if next == "" {
			break
		}
		if out, _, err = c.call(ctx, http.MethodGet, next, scopeManagement, nil); err != nil {
			return nil, err
		}
	}
	if all == nil {
		all = []any{}
	}
	return all, nil
}

// poll follows a long-running operation's Location header until it is no
// longer 202, as az does for a resource group delete.
func (c *client) poll(ctx context.Context, resp *http.Response) error {
	for resp != nil && resp.StatusCode == http.StatusAccepted {
		loc := resp.Header.Get("Location")
		if loc == "" {
			return nil
		}
		wait := time.Second
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			wait = min(time.Duration(s)*time.Second, 30*time.Second)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		var err error
		if _, resp, err = c.call(ctx, http.MethodGet, loc, scopeManagement, nil); err != nil {
			return err
		}
	}
	return nil
}

// subscriptionPath is /subscriptions/{id} of the current subscription.
func (c *client) subscriptionPath() string { return "/subscriptions/" + c.cred.SubscriptionID }
