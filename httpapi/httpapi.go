// Package httpapi serves Custody's services over Azure's own wire protocols,
// on one TLS listener that routes by host name:
//
//	login.{domain}             token service (OIDC discovery, JWKS, OAuth 2.0 token endpoint)
//	graph.{domain}             directory: service principals (a Microsoft Graph subset)
//	management.{domain}        resource manager (ARM): groups, RBAC, managed identities, ...
//	{vault}.vault.{domain}     key vault data plane (registered by the key vault service)
//	{account}.batch.{domain}   batch data plane (registered by the batch service)
//
// The loopback address and the bare domain answer both token and resource
// manager paths, so SDK programs whose resolver does not know *.localhost can
// still authenticate and manage resources. /healthz answers on every host;
// Prometheus metrics are served only by MetricsHandler, on a listener of
// their own.
//
// Errors: handlers return error; writeError is the one place that turns a
// *custody.Error into an HTTP status and Azure's error body.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"custody"
	"custody/identity"
	"custody/rm"
)

// Config is what the HTTP server needs.
type Config struct {
	Domain   string // e.g. "localhost"
	Port     int    // the public port in URLs
	Identity *identity.Service
	RM       *rm.Service
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Warnings are reported by /healthz beside the status (an unsafe
	// configuration the operator chose).
	Warnings []string
	// Health, if set, is called by /healthz; an error answers 503.
	Health func() error
	// Role, if set, says whether this replica is the cluster's "active"
	// one or a "standby"; /healthz reports it, and a replica that is not
	// the active answers every other request 503 ServiceUnavailable with a
	// Retry-After.
	Role func() string
	// Standby, if set, answers the requests a replica that is not the
	// active one receives, by forwarding them to the active; requests
	// already forwarded once (ForwardedHeader) are answered 503 instead.
	Standby http.Handler
}

// ForwardedHeader marks a request a standby forwarded to the active
// replica, so that it is never forwarded again.
const ForwardedHeader = "X-Custody-Forwarded"

// RoleActive is the role of the replica that serves requests.
const RoleActive = "active"

// standbyRetryAfter is the Retry-After, in seconds, of a standby's 503.
const standbyRetryAfter = "1"

// Server is the HTTP side of Custody. Data-plane services register their
// handlers with HandleVault and HandleBatch; resource providers register ARM
// routes with ARM().Handle.
type Server struct {
	cfg     Config
	log     *slog.Logger
	arm     *ARM
	login   http.Handler
	vault   http.Handler
	batch   http.Handler
	nodes   http.Handler // node channel on batch.{domain}
	portal  http.Handler
	graph   http.Handler
	metrics *metrics
}

// New returns a Server with the token service and the resource manager's own
// routes (subscriptions, resource groups, role assignments, managed
// identities, operation results) registered.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: newMetrics(cfg.Registry)}
	s.login = s.loginHandler()
	s.graph = s.graphHandler()
	s.arm = newARM(s)
	registerRM(s.arm)
	registerMSI(s.arm)
	return s
}

// ARM returns the resource manager router, for providers to add routes to.
func (s *Server) ARM() *ARM { return s.arm }

// HandleVault sets the handler for {vault}.vault.{domain} hosts.
func (s *Server) HandleVault(h http.Handler) { s.vault = h }

// HandleBatch sets the handler for {account}.batch.{domain} hosts.
func (s *Server) HandleBatch(h http.Handler) { s.batch = h }

// HandlePortal sets the handler for portal.{domain}.
func (s *Server) HandlePortal(h http.Handler) { s.portal = h }

// MetricsHandler serves the Prometheus metrics. The server mounts it on a
// separate listen address (--metrics-listen), never on the public hosts.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	return mux
}

// Metrics returns the metrics registry.
func (s *Server) Metrics() *prometheus.Registry { return s.cfg.Registry }

// hostClass is which service a host name belongs to.
type hostClass string

const (
	hostLogin      hostClass = "login"
	hostManagement hostClass = "management"
	hostCombined   hostClass = "combined"
	hostVault      hostClass = "vault"
	hostBatch      hostClass = "batch"
	hostNodes      hostClass = "nodes"
	hostPortal     hostClass = "portal"
	hostGraph      hostClass = "graph"
	hostUnknown    hostClass = "unknown"
)

// classify returns the class of host (without port) and, for vault and batch
// hosts, the vault or account name.
func (s *Server) classify(host string) (hostClass, string) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	d := strings.ToLower(s.cfg.Domain)
	switch {
	case host == "login."+d:
		return hostLogin, ""
	case host == "management."+d:
		return hostManagement, ""
	case host == "portal."+d:
		return hostPortal, ""
	case host == "graph."+d:
		return hostGraph, ""
	case host == "batch."+d:
		return hostNodes, ""
	case host == d || host == "localhost" || net.ParseIP(host) != nil:
		return hostCombined, ""
	case strings.HasSuffix(host, ".vault."+d):
		name := strings.TrimSuffix(host, ".vault."+d)
		if name != "" && !strings.Contains(name, ".") {
			return hostVault, name
		}
	case strings.HasSuffix(host, ".batch."+d):
		name := strings.TrimSuffix(host, ".batch."+d)
		if name != "" && !strings.Contains(name, ".") {
			return hostBatch, name
		}
	}
	return hostUnknown, ""
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// PublicURL returns https://{name}.{domain}:{port}.
func (s *Server) PublicURL(name string) string {
	h := s.cfg.Domain
	if name != "" {
		h = name + "." + h
	}
	if s.cfg.Port == 443 {
		return "https://" + h
	}
	return "https://" + h + ":" + strconv.Itoa(s.cfg.Port)
}

// Issuers returns every issuer URL the token service signs with: one per
// host name it answers on.
func (s *Server) Issuers() []string {
	tenant := s.cfg.Identity.TenantID
	port := ":" + strconv.Itoa(s.cfg.Port)
	hosts := []string{"login." + s.cfg.Domain + port, s.cfg.Domain + port, "localhost" + port, "127.0.0.1" + port, "[::1]" + port}
	if s.cfg.Port == 443 {
		hosts = append(hosts, "login."+s.cfg.Domain, s.cfg.Domain, "localhost", "127.0.0.1", "[::1]")
	}
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = "https://" + h + "/" + tenant + "/v2.0"
	}
	return out
}

// Handler returns the root handler: request ids, logging, metrics and panic
// recovery around routing by host.
func (s *Server) Handler() http.Handler {
	return s.instrument(http.HandlerFunc(s.route))
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		s.healthz(w, r)
		return
	}
	// No name or id contains NUL, and PostgreSQL cannot store one: refuse it
	// here rather than fail in the database.
	if strings.ContainsRune(r.URL.Path, 0) {
		writeError(w, r, custody.Errorf(custody.KindInvalid, "InvalidRequestUri", "The request path contains a NUL character (%%00)."))
		return
	}
	class, name := s.classify(hostOnly(r.Host))
	setClass(r, class)
	if s.cfg.Role != nil {
		if role := s.cfg.Role(); role != RoleActive {
			if s.cfg.Standby != nil && r.Header.Get(ForwardedHeader) == "" {
				s.cfg.Standby.ServeHTTP(w, r)
				return
			}
			WriteStandbyError(w, r, role)
			return
		}
	}
	if (class == hostManagement || class == hostCombined) && isMetadataPath(r.URL.Path) {
		s.cloudMetadata(w, r)
		return
	}
	switch class {
	case hostLogin:
		s.login.ServeHTTP(w, r)
	case hostManagement:
		s.arm.ServeHTTP(w, r)
	case hostCombined:
		if isLoginPath(r.URL.Path) {
			s.login.ServeHTTP(w, r)
		} else {
			s.arm.ServeHTTP(w, r)
		}
	case hostGraph:
		s.graph.ServeHTTP(w, r)
	case hostVault:
		if s.vault == nil {
			writeError(w, r, custody.Errorf(custody.KindNotFound, "VaultNotFound", "No key vault service is running on this server, so vault %q cannot be reached.", name))
			return
		}
		s.vault.ServeHTTP(w, r)
	case hostBatch:
		if s.batch == nil {
			writeError(w, r, custody.Errorf(custody.KindNotFound, "AccountNotFound", "No batch service is running on this server, so account %q cannot be reached.", name))
			return
		}
		s.batch.ServeHTTP(w, r)
	case hostNodes:
		if s.nodes == nil {
			writeError(w, r, custody.Errorf(custody.KindNotFound, "NodeChannelNotFound", "No compute service is running on this server."))
			return
		}
		s.nodes.ServeHTTP(w, r)
	case hostPortal:
		if s.portal == nil {
			writeError(w, r, custody.Errorf(custody.KindNotFound, "PortalNotFound", "The portal is not enabled on this server."))
			return
		}
		s.portal.ServeHTTP(w, r)
	default:
		writeError(w, r, custody.Errorf(custody.KindNotFound, "UnknownHost",
			"This server does not serve host %q. Use login.%s, management.%s, {vault}.vault.%s or {account}.batch.%s.",
			hostOnly(r.Host), s.cfg.Domain, s.cfg.Domain, s.cfg.Domain, s.cfg.Domain))
	}
}

func isLoginPath(p string) bool {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	if len(segs) < 2 {
		return false
	}
	if strings.EqualFold(segs[0], "adfs") {
		return true
	}
	switch strings.ToLower(segs[1]) {
	case "v2.0", "oauth2", "discovery":
		return !strings.EqualFold(segs[0], "subscriptions") && !strings.EqualFold(segs[0], "providers")
	}
	return false
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Health != nil {
		if err := s.cfg.Health(); err != nil {
			s.log.Warn("health check failed", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
			return
		}
	}
	body := map[string]any{"status": "ok"}
	if len(s.cfg.Warnings) > 0 {
		body["warnings"] = s.cfg.Warnings
	}
	status := http.StatusOK
	if s.cfg.Role != nil {
		role := s.cfg.Role()
		body["role"] = role
		// A load balancer that should send requests to the active replica
		// only checks /healthz?active: a standby answers it 503.
		if _, ok := r.URL.Query()["active"]; ok && role != RoleActive {
			status = http.StatusServiceUnavailable
		}
	}
	writeJSON(w, status, body)
}

// WriteStandbyError answers a request a replica that is not the active one
// cannot serve: 503 ServiceUnavailable in Azure's shape, with a Retry-After.
func WriteStandbyError(w http.ResponseWriter, r *http.Request, role string) {
	w.Header().Set("Retry-After", standbyRetryAfter)
	writeError(w, r, custody.Errorf(custody.KindUnavailable, "ServiceUnavailable",
		"This Custody replica is a %s and could not reach the cluster's active replica: retry shortly.", role))
}

// StatusOf returns the HTTP status for an error kind: the one table from
// error kinds to status codes, shared by the APIs and the portal.
func StatusOf(k custody.Kind) int { return statusOf(k) }

// statusOf is the one table from error kinds to HTTP status codes.
func statusOf(k custody.Kind) int {
	switch k {
	case custody.KindInvalid:
		return http.StatusBadRequest
	case custody.KindUnauthenticated:
		return http.StatusUnauthorized
	case custody.KindForbidden:
		return http.StatusForbidden
	case custody.KindNotFound:
		return http.StatusNotFound
	case custody.KindMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case custody.KindConflict:
		return http.StatusConflict
	case custody.KindPreconditionFailed:
		return http.StatusPreconditionFailed
	case custody.KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case custody.KindUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// azureError is the error body of ARM and Key Vault.
type azureError struct {
	Error azureErrorBody `json:"error"`
}

type azureErrorBody struct {
	Code       string          `json:"code"`
	Message    string          `json:"message"`
	Target     string          `json:"target,omitempty"`
	InnerError *azureInnerCode `json:"innererror,omitempty"`
}

type azureInnerCode struct {
	Code string `json:"code"`
}

// writeError writes err in Azure's error shape. Internal errors are logged
// with their cause and shown only as a generic message.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	kind := custody.ErrorKind(err)
	if kind == custody.KindInternal {
		lg := state(r).log
		if lg == nil {
			lg = slog.Default()
		}
		lg.Error("internal error", "method", r.Method, "path", logPath(r), "request_id", w.Header().Get("x-ms-request-id"), "err", err)
	}
	body := azureErrorBody{Code: custody.ErrorCode(err), Message: custody.ErrorMessage(err)}
	var ce *custody.Error
	if errors.As(err, &ce) {
		body.Target = ce.Target
		if ce.Inner != "" {
			body.InnerError = &azureInnerCode{Code: ce.Inner}
		}
	}
	setErrorCode(r, body.Code)
	w.Header().Set("x-ms-error-code", body.Code)
	writeJSON(w, statusOf(kind), azureError{Error: body})
}

// batchError is the error body of the Batch data plane (OData).
type batchError struct {
	Metadata string             `json:"odata.metadata"`
	Code     string             `json:"code"`
	Message  batchErrorMessage  `json:"message"`
	Values   []batchErrorDetail `json:"values,omitempty"`
}

type batchErrorMessage struct {
	Lang  string `json:"lang"`
	Value string `json:"value"`
}

type batchErrorDetail struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// newBatchError builds the Batch error body of err; the message carries the
// request id and time as Batch's does.
func newBatchError(r *http.Request, requestID string, err error) batchError {
	msg := custody.ErrorMessage(err) + "\nRequestId:" + requestID + "\nTime:" + time.Now().UTC().Format("2006-01-02T15:04:05.0000000Z")
	body := batchError{
		Metadata: "https://" + r.Host + "/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
		Code:     custody.ErrorCode(err),
		Message:  batchErrorMessage{Lang: "en-US", Value: msg},
	}
	var ce *custody.Error
	if errors.As(err, &ce) && ce.Target != "" {
		body.Values = append(body.Values, batchErrorDetail{Key: "PropertyName", Value: ce.Target})
	}
	var ad *authDetailError
	if errors.As(err, &ad) {
		body.Values = append(body.Values, batchErrorDetail{Key: "AuthenticationErrorDetail", Value: ad.detail})
	}
	return body
}

// writeBatchError writes err in the Batch data plane's error shape, with
// the status of the same statusOf table. Internal errors are logged with
// their cause and shown only as a generic message.
func writeBatchError(w http.ResponseWriter, r *http.Request, err error) {
	kind := custody.ErrorKind(err)
	reqID := w.Header().Get("x-ms-request-id")
	if kind == custody.KindInternal {
		lg := state(r).log
		if lg == nil {
			lg = slog.Default()
		}
		lg.Error("internal error", "method", r.Method, "path", logPath(r), "request_id", reqID, "err", err)
	}
	body := newBatchError(r, reqID, err)
	setErrorCode(r, body.Code)
	w.Header().Set("x-ms-error-code", body.Code)
	writeJSON(w, statusOf(kind), body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if v != nil {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
	}
}

// maxBody is the largest request body any API accepts: ARM's limit. Routes
// with a lower limit set it with setBodyLimit.
const maxBody = 4 << 20

// readBody reads r's body up to the request's limit. A declared or actual
// size over the limit is 413 RequestTooLarge naming the limit (refused
// before reading when Content-Length declares it); a body the client does
// not send within the server's read timeout is 400.
func readBody(r *http.Request) ([]byte, error) {
	limit := state(r).bodyLimit
	if limit <= 0 {
		limit = maxBody
	}
	tooLarge := func() error {
		return custody.Errorf(custody.KindTooLarge, "RequestTooLarge",
			"The request body is larger than %d bytes, the limit of this operation.", limit)
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var ne net.Error
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			return nil, custody.Errorf(custody.KindInvalid, "InvalidRequestContent",
				"The request body was not received in time; send the whole request within the server's read timeout.")
		}
		return nil, custody.Errorf(custody.KindInvalid, "InvalidRequestContent", "The request body could not be read: %v.", err)
	}
	if int64(len(body)) > limit {
		return nil, tooLarge()
	}
	return body, nil
}

// decodeJSON reads the request body into v. An empty body, a body that is not
// JSON, or one over maxBody gives a 400/413 in Azure's shape naming the
// problem.
func decodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "text/json") {
			return custody.Errorf(custody.KindInvalid, "UnsupportedMediaType", "The content type %q is not supported; send application/json.", ct)
		}
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return custody.Errorf(custody.KindInvalid, "InvalidRequestContent", "The request body is empty; a JSON object is required.")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return custody.Errorf(custody.KindInvalid, "InvalidRequestContent",
			"The request content was invalid and could not be deserialized: %s.", jsonErrorText(err))
	}
	if bytes.Contains(body, []byte(`\u0000`)) {
		var raw any
		if json.Unmarshal(body, &raw) == nil && hasNUL(raw) {
			return custody.Errorf(custody.KindInvalid, "InvalidRequestContent",
				"The request content was invalid: a string contains a NUL character (\\u0000).")
		}
	}
	return nil
}

// hasNUL reports whether any string or object key in a decoded JSON value
// contains NUL, which PostgreSQL cannot store in text.
func hasNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.ContainsRune(v, 0)
	case []any:
		for _, x := range v {
			if hasNUL(x) {
				return true
			}
		}
	case map[string]any:
		for k, x := range v {
			if strings.ContainsRune(k, 0) || hasNUL(x) {
				return true
			}
		}
	}
	return false
}

func jsonErrorText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "malformed JSON at offset " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(root)"
		}
		return "field '" + field + "' must be " + jsonTypeName(te.Type.Kind().String()) + ", not a JSON " + te.Value
	default:
		return err.Error()
	}
}

func jsonTypeName(k string) string {
	switch k {
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	default:
		return "a number"
	}
}

// rfc1123 formats t as HTTP dates are formatted.
func rfc1123(t time.Time) string { return t.UTC().Format(http.TimeFormat) }
