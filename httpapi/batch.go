package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"custody"
	"custody/batch"
	"custody/compute"
	"custody/identity"
)

// The batch data plane ({account}.batch.{domain}) speaks the Batch REST API
// (api-version 2024-07-01.20.0) as azbatch calls it: jobs, tasks, job
// schedules (batch_jobschedules.go), task reactivate and the job
// preparation and release task status (batch_jobtasks.go) and
// certificates. Every request is checked in this order: bearer token (401
// with a challenge), account from the host name (404 AccountNotFound), role
// on the account (Microsoft.Batch/batchAccounts/read for reads, /write
// otherwise), the account's allowed authentication modes (AAD), then the
// route and the body. A request signed with a shared key is checked
// instead against the account's keys and modes (batch_sharedkey.go). Errors use Batch's OData error
// shape (writeBatchError).

// BatchAccounts is what the data plane needs to find an account and check
// shared-key signatures (batch.Service).
type BatchAccounts interface {
	Account(ctx context.Context, name string) (*batch.Account, error)
	// VerifySharedKey reports whether mac is one of sign(key) for one of
	// the account's two shared keys.
	VerifySharedKey(ctx context.Context, a *batch.Account, mac []byte, sign func(key []byte) [][]byte) (bool, error)
}

// batchData serves the batch data plane.
type batchData struct {
	s        *Server
	accounts BatchAccounts
	data     *batch.DataService
	compute  *compute.Service // pools, nodes and files (compute.go)
}

// RegisterBatchData serves the batch data plane of every account on
// {account}.batch.{domain}.
func (s *Server) RegisterBatchData(accounts BatchAccounts, data *batch.DataService) {
	s.HandleBatch(&batchData{s: s, accounts: accounts, data: data})
}

// batchRequest is one data-plane request after auth, account lookup and
// role check.
type batchRequest struct {
	w       http.ResponseWriter
	r       *http.Request
	account *batch.Account
	segs    []string
	ctx     context.Context
	compute *compute.Service
}

func (b *batchData) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := w.Header().Get("x-ms-request-id")
	w.Header().Set("request-id", reqID)
	if cid := r.Header.Get("client-request-id"); cid != "" && len(cid) <= 128 {
		w.Header().Set("client-request-id", cid)
	}
	_, name := b.s.classify(hostOnly(r.Host))
	var acct *batch.Account
	if isSharedKey(r) {
		// A shared key is full data-plane access to its account: no RBAC
		// check follows (batch_sharedkey.go).
		authed, a, err := b.verifySharedKey(r, name)
		if err != nil {
			writeBatchError(w, r, err)
			return
		}
		r, acct = authed, a
	} else {
		authed, err := b.s.authenticate(r, identity.AudienceBatch)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="`+b.s.PublicURL("login")+"/"+b.s.cfg.Identity.TenantID+`", error="invalid_token", resource="https://batch.core.windows.net/"`)
			writeBatchError(w, r, err)
			return
		}
		r = authed
		a, err := b.accounts.Account(r.Context(), name)
		if custody.IsNotFound(err) {
			writeBatchError(w, r, custody.Errorf(custody.KindNotFound, "AccountNotFound", "The specified account does not exist: there is no batch account %q on this server. Create it first (custody batch account create).", name))
			return
		}
		if err != nil {
			writeBatchError(w, r, err)
			return
		}
		caller, _ := custody.CallerFrom(r.Context())
		action := "Microsoft.Batch/batchAccounts/write"
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			action = "Microsoft.Batch/batchAccounts/read"
		}
		if err := b.s.cfg.RM.Authorize(r.Context(), caller.ObjectID, a.ID, action, false); err != nil {
			writeBatchError(w, r, err)
			return
		}
		if !a.Allows(batch.AuthModeAAD) {
			writeBatchError(w, r, modeNotAllowed(batch.AuthModeAAD))
			return
		}
		acct = a
	}
	if v := r.URL.Query().Get("api-version"); v == "" {
		writeBatchError(w, r, custody.Errorf(custody.KindInvalid, "MissingRequiredQueryParameter", "A query parameter that's mandatory for this request is not specified: add api-version=2024-07-01.20.0."))
		return
	} else if served, ok := resolveBatchDataVersion(v); ok {
		b.s.servedAs(w, r, v, served)
	} else {
		e := custody.Errorf(custody.KindInvalid, "InvalidQueryParameterValue",
			"Value for one of the query parameters specified in the request URI is invalid: api-version %q is not supported; use 2024-07-01.20.0.", v)
		e.Target = "api-version"
		writeBatchError(w, r, e)
		return
	}
	segs, err := splitEscaped(r.URL)
	if err != nil {
		writeBatchError(w, r, custody.Errorf(custody.KindInvalid, "InvalidUri", "The request path is not a valid URL path: %v.", err))
		return
	}
	br := &batchRequest{w: w, r: r, account: acct, segs: segs, ctx: r.Context(), compute: b.compute}
	if err := b.route(br); err != nil {
		writeBatchError(w, r, err)
	}
}

// batchRoute is one operation of the batch data plane.
type batchRoute struct {
	DataRoute
	pattern routePattern
	serve   func(*batchData, *batchRequest) error
	// compute marks the routes of pools, nodes and files, served only when
	// the compute service runs.
	compute bool
}

// batchRoutes is the data plane's route table. The first route whose path
// and method match serves the request; literal paths come before the
// templates they would also match. Handlers read their ids from the path
// segments.
var batchRoutes = func() []batchRoute {
	type d = batchData
	rs := []batchRoute{
		{DataRoute: DataRoute{"GET", "/jobs"}, serve: (*d).listJobs},
		{DataRoute: DataRoute{"POST", "/jobs"}, serve: (*d).addJob},
		{DataRoute: DataRoute{"GET", "/jobs/{jobId}"}, serve: (*d).getJob},
		{DataRoute: DataRoute{"PUT", "/jobs/{jobId}"}, serve: (*d).replaceJob},
		{DataRoute: DataRoute{"PATCH", "/jobs/{jobId}"}, serve: (*d).updateJob},
		{DataRoute: DataRoute{"DELETE", "/jobs/{jobId}"}, serve: (*d).deleteJob},
		{DataRoute: DataRoute{"POST", "/jobs/{jobId}/disable"}, serve: (*d).disableJob},
		{DataRoute: DataRoute{"POST", "/jobs/{jobId}/enable"}, serve: (*d).enableJob},
		{DataRoute: DataRoute{"POST", "/jobs/{jobId}/terminate"}, serve: (*d).terminateJob},
		{DataRoute: DataRoute{"GET", "/jobs/{jobId}/taskcounts"}, serve: (*d).jobTaskCounts},
		{DataRoute: DataRoute{"GET", "/jobs/{jobId}/tasks"}, serve: (*d).listTasks},
		{DataRoute: DataRoute{"POST", "/jobs/{jobId}/tasks"}, serve: (*d).addTask},
		{DataRoute: DataRoute{"POST", "/jobs/{jobId}/addtaskcollection"}, serve: (*d).addTaskCollection},
		{DataRoute: DataRoute{"GET", "/jobs/{jobId}/tasks/{taskId}"}, serve: (*d).getTask},
		{DataRoute: DataRoute{"PUT", "/jobs/{jobId}/tasks/{taskId}"}, serve: (*d).replaceTask},
		{DataRoute: DataRoute{"DELETE", "/jobs/{jobId}/tasks/{taskId}"}, serve: (*d).deleteTask},
		{DataRoute: DataRoute{"POST", "/jobs/{jobId}/tasks/{taskId}/terminate"}, serve: (*d).terminateTask},
		{DataRoute: DataRoute{"GET", "/certificates"}, serve: (*d).listCertificates},
		{DataRoute: DataRoute{"POST", "/certificates"}, serve: (*d).addCertificate},
		{DataRoute: DataRoute{"GET", "/certificates(...)"}, serve: (*d).getCertificate},
		{DataRoute: DataRoute{"DELETE", "/certificates(...)"}, serve: (*d).deleteCertificate},
	}
	rs = append(rs, jobScheduleRoutes()...)
	rs = append(rs, jobTaskRoutes()...)
	for _, r := range computeRoutes() {
		r.compute = true
		rs = append(rs, r)
	}
	for i := range rs {
		rs[i].pattern = parsePattern(rs[i].Path)
	}
	return rs
}()

// route dispatches through batchRoutes.
func (b *batchData) route(q *batchRequest) error {
	var allowed []string
	for i := range batchRoutes {
		rt := &batchRoutes[i]
		if rt.compute && b.compute == nil {
			continue
		}
		if _, ok := rt.pattern.match(q.segs); !ok {
			continue
		}
		if rt.Method != q.r.Method {
			if !slices.Contains(allowed, rt.Method) {
				allowed = append(allowed, rt.Method)
			}
			continue
		}
		return rt.serve(b, q)
	}
	if len(allowed) > 0 {
		return custody.Errorf(custody.KindMethodNotAllowed, "UnsupportedHttpVerb", "The resource %s does not support the %s method; use %s.", clipPath(q.r.URL.Path), q.r.Method, strings.Join(allowed, " or "))
	}
	return custody.Errorf(custody.KindNotFound, "InvalidUri", "The requested URI does not represent any resource on this server: %s. This server serves /jobs, /jobs/{jobId}/tasks, /jobschedules, /certificates, /pools and /nodecounts.", clipPath(q.r.URL.Path))
}

func clipPath(p string) string {
	if len(p) > 200 {
		return p[:200] + "..."
	}
	return p
}

// ---- helpers shared by the batch handlers ----

// baseURL is https://{host} of the request: the account endpoint.
func (q *batchRequest) baseURL() string { return "https://" + q.r.Host }

func (q *batchRequest) metadata(fragment string) string {
	return q.baseURL() + "/$metadata#" + fragment
}

func (q *batchRequest) ifMatch() string { return q.r.Header.Get("If-Match") }

// entityHeaders sets ETag, Last-Modified and DataServiceId.
func (q *batchRequest) entityHeaders(etag string, modified time.Time, url string) {
	h := q.w.Header()
	if etag != "" {
		h.Set("ETag", etag)
	}
	if !modified.IsZero() {
		h.Set("Last-Modified", rfc1123(modified))
	}
	if url != "" {
		h.Set("DataServiceId", url)
	}
}

// created answers 201 with Location and DataServiceId.
func (q *batchRequest) created(etag string, modified time.Time, url string) error {
	q.entityHeaders(etag, modified, url)
	q.w.Header().Set("Location", url)
	q.w.Header().Set("Content-Length", "0")
	q.w.WriteHeader(http.StatusCreated)
	return nil
}

// noBody answers status with no body.
func (q *batchRequest) noBody(status int) error {
	if status != http.StatusNoContent {
		q.w.Header().Set("Content-Length", "0")
	}
	q.w.WriteHeader(status)
	return nil
}

// decode reads a required JSON body.
func (q *batchRequest) decode(v any) error {
	return batchBodyError(decodeJSON(q.r, v))
}

// decodeOptional reads a JSON body if there is one.
func (q *batchRequest) decodeOptional(v any) (bool, error) {
	body, err := readBody(q.r)
	if err != nil {
		return false, batchBodyError(err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return false, custody.Errorf(custody.KindInvalid, "InvalidRequestBody", "The request body is not valid: %s.", jsonErrorText(err))
	}
	return true, nil
}

// batchBodyError renames decodeJSON's errors to Batch's codes.
func batchBodyError(err error) error {
	if err == nil {
		return nil
	}
	if ce, ok := err.(*custody.Error); ok {
		switch ce.Code {
		case "InvalidRequestContent":
			c := *ce
			c.Code = "InvalidRequestBody"
			return &c
		case "RequestTooLarge":
			c := *ce
			c.Code = "RequestBodyTooLarge"
			return &c
		}
	}
	return err
}

// listQuery reads $filter, maxresults and $skiptoken.
func (q *batchRequest) listQuery() (batch.ListQuery, error) {
	v := q.r.URL.Query()
	lq := batch.ListQuery{Filter: v.Get("$filter"), SkipToken: v.Get("$skiptoken")}
	if m := v.Get("maxresults"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 || n > batch.MaxPageSize {
			e := custody.Errorf(custody.KindInvalid, "InvalidQueryParameterValue", "The value for one of the query parameters is not valid: maxresults %q must be a number from 1 to %d.", clipPath(m), batch.MaxPageSize)
			e.Target = "maxresults"
			return lq, e
		}
		lq.MaxResults = n
	}
	return lq, nil
}

// nextLink is the absolute URL of the next page: the same query, with the
// skip token of the next page.
func (q *batchRequest) nextLink(token string) string {
	if token == "" {
		return ""
	}
	v := q.r.URL.Query()
	v.Set("$skiptoken", token)
	return q.baseURL() + q.r.URL.EscapedPath() + "?" + v.Encode()
}

// selectProps reads $select (comma-separated top-level properties).
func (q *batchRequest) selectProps() []string {
	s := q.r.URL.Query().Get("$select")
	if strings.TrimSpace(s) == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.ToLower(p))
		}
	}
	return out
}

// project keeps only the selected top-level properties of v (and
// odata.metadata).
func project(v any, sel []string) (any, error) {
	if len(sel) == 0 {
		return v, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, custody.Internal(err, "encode entity")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, custody.Internal(err, "decode entity")
	}
	keep := map[string]bool{"odata.metadata": true}
	for _, s := range sel {
		keep[s] = true
	}
	for k := range m {
		if !keep[strings.ToLower(k)] {
			delete(m, k)
		}
	}
	return m, nil
}

// writeList writes a list page.
func (q *batchRequest) writeList(fragment string, items []any, next string) error {
	sel := q.selectProps()
	for i := range items {
		p, err := project(items[i], sel)
		if err != nil {
			return err
		}
		items[i] = p
	}
	body := struct {
		Metadata string `json:"odata.metadata"`
		Value    []any  `json:"value"`
		NextLink string `json:"odata.nextLink,omitempty"`
	}{q.metadata(fragment), items, q.nextLink(next)}
	writeJSON(q.w, http.StatusOK, body)
	return nil
}

// writeEntity writes one entity with ETag and Last-Modified.
func (q *batchRequest) writeEntity(v any, etag string, modified time.Time) error {
	p, err := project(v, q.selectProps())
	if err != nil {
		return err
	}
	q.entityHeaders(etag, modified, "")
	writeJSON(q.w, http.StatusOK, p)
	return nil
}

// segment returns path segment i, unescaped.
func (q *batchRequest) segment(i int) string { return q.segs[i] }

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func escapeID(id string) string { return url.PathEscape(id) }
