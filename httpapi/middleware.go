package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"custody"
	"custody/identity"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custody_http_requests_total", Help: "HTTP requests by service, method and status code.",
		}, []string{"service", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "custody_http_request_duration_seconds", Help: "HTTP request latency by service.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"service"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custody_tokens_issued_total", Help: "Access tokens issued by audience class.",
		}, []string{"audience"}),
	}
	reg.MustRegister(m.requests, m.duration, m.tokens)
	return m
}

// reqState is per-request information the middleware reads back after the
// handler ran.
type reqState struct {
	log       *slog.Logger // the server's logger, for writeError
	class     hostClass
	caller    string
	errorCode string
	// bodyLimit is the largest request body decodeJSON reads (0: maxBody).
	bodyLimit int64
}

type stateKey struct{}

func state(r *http.Request) *reqState {
	if st, ok := r.Context().Value(stateKey{}).(*reqState); ok {
		return st
	}
	return &reqState{}
}

func setClass(r *http.Request, c hostClass)    { state(r).class = c }
func setErrorCode(r *http.Request, c string)   { state(r).errorCode = c }
func setCallerLog(r *http.Request, oid string) { state(r).caller = oid }

// setBodyLimit lowers the largest body decodeJSON reads for this request.
func setBodyLimit(r *http.Request, n int64) { state(r).bodyLimit = n }

// MaxRequestURI is the longest request target (path and query) served;
// longer ones are refused before routing. The server's MaxHeaderBytes
// refuses far longer ones before they reach a handler.
const MaxRequestURI = 8 << 10

// maxLoggedPath is how much of a request path a log line keeps.
const maxLoggedPath = 256

// logPath is r's path as logs record it: cut to maxLoggedPath bytes.
func logPath(r *http.Request) string {
	p := r.URL.Path
	if len(p) <= maxLoggedPath {
		return p
	}
	return p[:maxLoggedPath] + "...(" + strconv.Itoa(len(p)) + " bytes)"
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (read
// deadlines of node file replies).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// instrument adds request ids, panic recovery, a structured access log and
// metrics. The log never holds headers, query strings or bodies, so tokens
// and secrets cannot reach it.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		st := &reqState{log: s.log, class: hostUnknown}
		r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
		reqID := identity.NewID()
		w.Header().Set("x-ms-request-id", reqID)
		if cid := r.Header.Get("x-ms-client-request-id"); cid != "" && len(cid) <= 128 {
			w.Header().Set("x-ms-client-request-id", cid)
		}
		sw := &statusWriter{ResponseWriter: w}
		if len(r.RequestURI) > MaxRequestURI {
			defer s.logRequest(r, sw, st, reqID, start)
			setClass(r, hostUnknown)
			writeError(sw, r, custody.Errorf(custody.KindInvalid, "RequestUriTooLong",
				"The request URI is %d bytes long; this server accepts at most %d.", len(r.RequestURI), MaxRequestURI))
			return
		}
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic serving request", "method", r.Method, "path", logPath(r), "request_id", reqID, "panic", p, "stack", string(debug.Stack()))
				if !sw.wrote {
					writeError(sw, r, custody.Internal(nil, "panic"))
				}
			}
			s.logRequest(r, sw, st, reqID, start)
		}()
		next.ServeHTTP(sw, r)
	})
}

// logRequest counts a request in the metrics and writes its access log line.
func (s *Server) logRequest(r *http.Request, sw *statusWriter, st *reqState, reqID string, start time.Time) {
	status := sw.status
	if !sw.wrote {
		status = http.StatusOK
	}
	d := time.Since(start)
	s.metrics.requests.WithLabelValues(string(st.class), r.Method, strconv.Itoa(status)).Inc()
	s.metrics.duration.WithLabelValues(string(st.class)).Observe(d.Seconds())
	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelError
	case status < 400 && strings.HasPrefix(r.URL.Path, "/node/v1/"):
		// Node agents poll and report for every task; their
		// successful calls would drown the log.
		level = slog.LevelDebug
	}
	if !s.log.Enabled(r.Context(), level) {
		return
	}
	attrs := []any{"method", r.Method, "host", hostOnly(r.Host), "path", logPath(r), "status", status,
		"duration_ms", float64(d.Microseconds()) / 1000, "request_id", reqID}
	if st.caller != "" {
		attrs = append(attrs, "caller_oid", st.caller)
	}
	if st.errorCode != "" {
		attrs = append(attrs, "error_code", st.errorCode)
	}
	s.log.Log(r.Context(), level, "request", attrs...)
}

// authenticate verifies the bearer token of r for an API of class c and
// returns r with the caller in its context. challenge writes the
// WWW-Authenticate header the API's clients expect.
func (s *Server) authenticate(r *http.Request, c identity.AudienceClass) (*http.Request, error) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !equalFoldASCII(h[:len(prefix)], prefix) {
		return nil, custody.Errorf(custody.KindUnauthenticated, "AuthenticationFailed",
			"Authentication failed. The 'Authorization' header is missing; send 'Authorization: Bearer <token>' with a token from %s.", s.PublicURL("login"))
	}
	claims, err := s.cfg.Identity.Authority.Verify(h[len(prefix):], s.cfg.Identity.Expectation(c, s.Issuers()))
	if err != nil {
		return nil, err
	}
	if claims.TenantID != s.cfg.Identity.TenantID {
		return nil, custody.Errorf(custody.KindUnauthenticated, "InvalidAuthenticationTokenTenant",
			"The access token is from tenant '%s', but this server's tenant is '%s'.", claims.TenantID, s.cfg.Identity.TenantID)
	}
	setCallerLog(r, claims.ObjectID)
	caller := custody.Caller{ObjectID: claims.ObjectID, AppID: claims.AppID, TenantID: claims.TenantID, Issuer: claims.Issuer, Audience: claims.Audience}
	return r.WithContext(custody.WithCaller(r.Context(), caller)), nil
}

// Authenticate is authenticate for data-plane services outside this package.
func (s *Server) Authenticate(r *http.Request, c identity.AudienceClass) (*http.Request, error) {
	return s.authenticate(r, c)
}

// WriteError writes err in Azure's ARM/Key Vault error shape.
func WriteError(w http.ResponseWriter, r *http.Request, err error) { writeError(w, r, err) }

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// DecodeJSON decodes a request body with the limits and errors of this package.
func DecodeJSON(r *http.Request, v any) error { return decodeJSON(r, v) }

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}
