package compat_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

	"custody/batch"
	"custody/rm"
	"custody/server"
	"custody/server/servertest"
)

const dataAPIVersion = "2024-07-01.20.0"

// mustBatchAccount creates a batch account with the platform key through
// the batch service, in resource group rg (created if needed).
func mustBatchAccount(tb testing.TB, ts *servertest.TestServer, rg, name string) *batch.Account {
	tb.Helper()
	return mustBatchAccountWith(tb, ts, rg, name, batch.AccountIdentity{}, batch.Encryption{})
}

func mustBatchAccountWith(tb testing.TB, ts *servertest.TestServer, rg, name string, id batch.AccountIdentity, enc batch.Encryption) *batch.Account {
	tb.Helper()
	MustGroup(tb, ts, adminToken(tb, ts), rg)
	sub := ts.Admin.SubscriptionID
	a, err := ts.Batch.CreateAccount(context.Background(), &batch.Account{
		ID:             rm.ResourceID(sub, rg, "Microsoft.Batch", "batchAccounts", name),
		SubscriptionID: sub, ResourceGroup: rg, Name: name, Location: "westus2",
		Identity: id, Encryption: enc,
	})
	if err != nil {
		tb.Fatalf("create batch account %s: %v", name, err)
	}
	return a
}

// batchEndpoint is https://{account}.batch.{domain}:{port}.
func batchEndpoint(ts *servertest.TestServer, name string) string {
	return "https://" + ts.Batch.AccountEndpoint(name)
}

// dataClient returns an azbatch client for account name as the admin.
func dataClient(tb testing.TB, ts *servertest.TestServer, name string) *azbatch.Client {
	tb.Helper()
	return dataClientAs(tb, ts, name, spCredential(tb, ts, ts.Admin.ClientID, ts.Admin.ClientSecret))
}

func dataClientAs(tb testing.TB, ts *servertest.TestServer, name string, cred azcore.TokenCredential) *azbatch.Client {
	tb.Helper()
	c, err := azbatch.NewClient(batchEndpoint(ts, name), cred, &azbatch.ClientOptions{ClientOptions: policy.ClientOptions{Transport: ts.Client}})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// batchToken is an access token for the Batch data plane, with the scope
// azbatch asks for.
func batchToken(tb testing.TB, ts *servertest.TestServer, clientID, secret string) string {
	tb.Helper()
	return MustToken(tb, ts, clientID, secret, "https://batch.core.windows.net//.default")
}

// batchRaw sends a raw request to an account's data plane.
func batchRaw(tb testing.TB, ts *servertest.TestServer, token, method, account, path, body string) response {
	tb.Helper()
	return MustDo(tb, ts, token, method, account+".batch", path, body)
}

// batchErrorBody is the Batch data plane's error shape.
type batchErrorBody struct {
	Metadata string `json:"odata.metadata"`
	Code     string `json:"code"`
	Message  *struct {
		Lang  string `json:"lang"`
		Value string `json:"value"`
	} `json:"message"`
	Values []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"values"`
}

// wantBatchError checks status and the Batch error shape with code (any
// code if empty).
func wantBatchError(tb testing.TB, r response, status int, code string) batchErrorBody {
	tb.Helper()
	var e batchErrorBody
	if r.Status != status {
		tb.Errorf("status = %d, want %d; body: %s", r.Status, status, r.Body)
		return e
	}
	if err := json.Unmarshal(r.Body, &e); err != nil {
		tb.Errorf("error body is not JSON: %s (%v)", r.Body, err)
		return e
	}
	if !strings.HasSuffix(e.Metadata, "#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element") {
		tb.Errorf("odata.metadata = %q, want the Batch errors element", e.Metadata)
	}
	if e.Code == "" || e.Message == nil || e.Message.Lang != "en-US" || !strings.Contains(e.Message.Value, "\nRequestId:") || !strings.Contains(e.Message.Value, "\nTime:") {
		tb.Errorf("error body lacks code or message {lang, value with RequestId and Time}: %s", r.Body)
	}
	if code != "" && e.Code != code {
		tb.Errorf("error code = %q, want %q; body: %s", e.Code, code, r.Body)
	}
	return e
}

// wantSDKError checks that err is a *azcore.ResponseError with status and
// code.
func wantSDKError(tb testing.TB, what string, err error, status int, code string) {
	tb.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		tb.Errorf("%s: error = %v, want a response error %d %s", what, err, status, code)
		return
	}
	if re.StatusCode != status || re.ErrorCode != code {
		tb.Errorf("%s: %d %s, want %d %s", what, re.StatusCode, re.ErrorCode, status, code)
	}
}

// selfSignedCert returns a DER certificate and its SHA-1 thumbprint.
func selfSignedCert(tb testing.TB, cn string) ([]byte, string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha1.Sum(der)
	return der, hex.EncodeToString(sum[:])
}

func env(name, value string) azbatch.EnvironmentSetting {
	return azbatch.EnvironmentSetting{Name: to.Ptr(name), Value: to.Ptr(value)}
}

func meta(name, value string) azbatch.MetadataItem {
	return azbatch.MetadataItem{Name: to.Ptr(name), Value: to.Ptr(value)}
}

// TestBatchDataLifecycle drives every job, task and certificate operation
// through azbatch.
func TestBatchDataLifecycle(t *testing.T) { batchDataLifecycle(t, servertest.New(t, nil)) }

// TestBatchDataLifecyclePostgres runs the same on PostgreSQL.
func TestBatchDataLifecyclePostgres(t *testing.T) { batchDataLifecycle(t, MustPostgresServer(t)) }

func batchDataLifecycle(t *testing.T, ts *servertest.TestServer) {
	ctx := context.Background()
	mustBatchAccount(t, ts, "rg1", "acct1")
	c := dataClient(t, ts, "acct1")

	// Jobs.
	created, err := c.CreateJob(ctx, azbatch.CreateJobContent{
		ID: to.Ptr("job-1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("pool-1")},
		DisplayName: to.Ptr("first job"), Priority: to.Ptr[int32](10), UsesTaskDependencies: to.Ptr(true),
		Constraints:               &azbatch.JobConstraints{MaxWallClockTime: to.Ptr("PT2H"), MaxTaskRetryCount: to.Ptr[int32](3)},
		CommonEnvironmentSettings: []azbatch.EnvironmentSetting{env("STAGE", "test")},
		Metadata:                  []azbatch.MetadataItem{meta("owner", "team-a")},
		OnAllTasksComplete:        to.Ptr(azbatch.OnAllTasksCompleteNoAction),
	}, nil)
	if err != nil {
		t.Fatalf("create job: %v", err)
	}
	if created.ETag == nil || created.LastModified == nil || created.DataServiceID == nil || created.RequestID == nil {
		t.Errorf("create job response lacks ETag, Last-Modified, DataServiceId or request-id: %+v", created)
	}
	_, err = c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("JOB-1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("pool-1")}}, nil)
	wantSDKError(t, "create job again (other case)", err, 409, "JobExists")

	got, err := c.GetJob(ctx, "job-1", nil)
	if err != nil {
		t.Fatalf("get job: %v", err)
	}
	j := got.Job
	if *j.ID != "job-1" || *j.State != azbatch.JobStateActive || *j.PoolInfo.PoolID != "pool-1" || *j.DisplayName != "first job" ||
		*j.Priority != 10 || *j.Constraints.MaxWallClockTime != "PT2H" || *j.CommonEnvironmentSettings[0].Value != "test" ||
		*j.Metadata[0].Value != "team-a" || *j.ExecutionInfo.PoolID != "pool-1" || j.CreationTime == nil || *j.ETag != *created.ETag {
		t.Errorf("get job = %s", mustJSON(j))
	}
	if got.ETag == nil || *got.ETag != *created.ETag || got.LastModified == nil {
		t.Errorf("get job headers: ETag %v, Last-Modified %v", got.ETag, got.LastModified)
	}

	// PATCH merges, PUT replaces.
	if _, err := c.UpdateJob(ctx, "job-1", azbatch.UpdateJobContent{Priority: to.Ptr[int32](20)}, nil); err != nil {
		t.Fatalf("update job: %v", err)
	}
	got, _ = c.GetJob(ctx, "job-1", nil)
	if *got.Priority != 20 || len(got.Metadata) != 1 || *got.DisplayName != "first job" {
		t.Errorf("after PATCH: priority %v, metadata %v, displayName %v", *got.Priority, got.Metadata, got.DisplayName)
	}
	if _, err := c.ReplaceJob(ctx, "job-1", azbatch.Job{PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("pool-2")}, Priority: to.Ptr[int32](5)}, nil); err != nil {
		t.Fatalf("replace job: %v", err)
	}
	got, _ = c.GetJob(ctx, "job-1", nil)
	if *got.Priority != 5 || len(got.Metadata) != 0 || got.Constraints != nil || *got.PoolInfo.PoolID != "pool-2" || *got.DisplayName != "first job" {
		t.Errorf("after PUT: %s", mustJSON(got.Job))
	}
	_, err = c.UpdateJob(ctx, "job-1", azbatch.UpdateJobContent{Priority: to.Ptr[int32](1)}, &azbatch.UpdateJobOptions{IfMatch: to.Ptr(azcore.ETag("0x1"))})
	wantSDKError(t, "update job with a stale If-Match", err, 412, "ConditionNotMet")

	// Disable and enable.
	if _, err := c.DisableJob(ctx, "job-1", azbatch.DisableJobContent{DisableTasks: to.Ptr(azbatch.DisableJobOptionRequeue)}, nil); err != nil {
		t.Fatalf("disable job: %v", err)
	}
	got, _ = c.GetJob(ctx, "job-1", nil)
	if *got.State != azbatch.JobStateDisabled || *got.PreviousState != azbatch.JobStateActive {
		t.Errorf("after disable: state %s, previous %v", *got.State, got.PreviousState)
	}
	_, err = c.DisableJob(ctx, "job-1", azbatch.DisableJobContent{DisableTasks: to.Ptr(azbatch.DisableJobOptionWait)}, nil)
	wantSDKError(t, "disable a disabled job", err, 409, "JobNotActive")
	if _, err := c.EnableJob(ctx, "job-1", nil); err != nil {
		t.Fatalf("enable job: %v", err)
	}
	got, _ = c.GetJob(ctx, "job-1", nil)
	if *got.State != azbatch.JobStateActive {
		t.Errorf("after enable: state %s", *got.State)
	}

	// Tasks.
	ct, err := c.CreateTask(ctx, "job-1", azbatch.CreateTaskContent{
		ID: to.Ptr("t1"), CommandLine: to.Ptr("/bin/sh -c 'echo hi'"), DisplayName: to.Ptr("task one"),
		EnvironmentSettings: []azbatch.EnvironmentSetting{env("A", "1")},
		Constraints:         &azbatch.TaskConstraints{MaxTaskRetryCount: to.Ptr[int32](1)},
		RequiredSlots:       to.Ptr[int32](2),
		UserIdentity:        &azbatch.UserIdentity{AutoUser: &azbatch.AutoUserSpecification{Scope: to.Ptr(azbatch.AutoUserScopeTask), ElevationLevel: to.Ptr(azbatch.ElevationLevelNonAdmin)}},
		ExitConditions:      &azbatch.ExitConditions{Default: &azbatch.ExitOptions{JobAction: to.Ptr(azbatch.JobActionNone)}},
	}, nil)
	if err != nil {
		t.Fatalf("create task: %v", err)
	}
	if ct.ETag == nil || ct.DataServiceID == nil || !strings.HasSuffix(*ct.DataServiceID, "/jobs/job-1/tasks/t1") {
		t.Errorf("create task headers: %+v", ct)
	}
	coll, err := c.CreateTaskCollection(ctx, "job-1", azbatch.TaskGroup{Value: []azbatch.CreateTaskContent{
		{ID: to.Ptr("t2"), CommandLine: to.Ptr("echo 2")},
		{ID: to.Ptr("t3"), CommandLine: to.Ptr("echo 3"), DependsOn: &azbatch.TaskDependencies{TaskIDs: []string{"t2"}}},
		{ID: to.Ptr("T1"), CommandLine: to.Ptr("echo dup")},
		{ID: to.Ptr("t4"), CommandLine: to.Ptr("")},
	}}, nil)
	if err != nil {
		t.Fatalf("create task collection: %v", err)
	}
	status := map[string]string{}
	for _, r := range coll.Value {
		status[*r.TaskID] = string(*r.Status)
		if *r.Status == azbatch.TaskAddStatusSuccess && (r.ETag == nil || r.Location == nil || r.LastModified == nil) {
			t.Errorf("successful add of %s lacks eTag, location or lastModified", *r.TaskID)
		}
		if *r.Status == azbatch.TaskAddStatusClientError && (r.Error == nil || r.Error.Code == nil) {
			t.Errorf("failed add of %s lacks an error", *r.TaskID)
		}
	}
	if status["t2"] != "success" || status["t3"] != "success" || status["T1"] != "clienterror" || status["t4"] != "clienterror" {
		t.Errorf("collection results = %v", status)
	}
	gt, err := c.GetTask(ctx, "job-1", "t1", nil)
	if err != nil {
		t.Fatalf("get task: %v", err)
	}
	if *gt.State != azbatch.TaskStateActive || *gt.CommandLine != "/bin/sh -c 'echo hi'" || *gt.DisplayName != "task one" ||
		*gt.EnvironmentSettings[0].Value != "1" || *gt.RequiredSlots != 2 || *gt.ExecutionInfo.RetryCount != 0 || *gt.ExecutionInfo.RequeueCount != 0 {
		t.Errorf("get task = %s", mustJSON(gt.Task))
	}
	gt3, _ := c.GetTask(ctx, "job-1", "t3", nil)
	if gt3.DependsOn == nil || len(gt3.DependsOn.TaskIDs) != 1 || gt3.DependsOn.TaskIDs[0] != "t2" {
		t.Errorf("t3 dependsOn = %v", gt3.DependsOn)
	}
	if _, err := c.ReplaceTask(ctx, "job-1", "t1", azbatch.Task{Constraints: &azbatch.TaskConstraints{MaxWallClockTime: to.Ptr("PT10M"), MaxTaskRetryCount: to.Ptr[int32](4)}}, nil); err != nil {
		t.Fatalf("replace task: %v", err)
	}
	gt, _ = c.GetTask(ctx, "job-1", "t1", nil)
	if *gt.Constraints.MaxWallClockTime != "PT10M" || *gt.Constraints.MaxTaskRetryCount != 4 || *gt.CommandLine != "/bin/sh -c 'echo hi'" {
		t.Errorf("after task replace: %s", mustJSON(gt.Task))
	}
	if _, err := c.TerminateTask(ctx, "job-1", "t2", nil); err != nil {
		t.Fatalf("terminate task: %v", err)
	}
	gt2, _ := c.GetTask(ctx, "job-1", "t2", nil)
	if *gt2.State != azbatch.TaskStateCompleted || gt2.ExecutionInfo.EndTime == nil {
		t.Errorf("after terminate: state %s, endTime %v", *gt2.State, gt2.ExecutionInfo.EndTime)
	}
	_, err = c.TerminateTask(ctx, "job-1", "t2", nil)
	wantSDKError(t, "terminate a completed task", err, 409, "TaskCompleted")
	counts, err := c.GetJobTaskCounts(ctx, "job-1", nil)
	if err != nil {
		t.Fatalf("task counts: %v", err)
	}
	if tc := counts.TaskCounts; *tc.Active != 2 || *tc.Completed != 1 || *tc.Failed != 1 || *tc.Succeeded != 0 {
		t.Errorf("task counts = %s, want the terminated task counted as failed", mustJSON(counts.TaskCounts))
	}
	if ei := gt2.ExecutionInfo; ei.Result == nil || *ei.Result != azbatch.TaskExecutionResultFailure || ei.FailureInfo == nil || *ei.FailureInfo.Code != "TaskEnded" {
		t.Errorf("terminated task's executionInfo = %s", mustJSON(ei))
	}
	var active []string
	pager := c.NewListTasksPager("job-1", &azbatch.ListTasksOptions{Filter: to.Ptr("state eq 'active'")})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list tasks: %v", err)
		}
		for _, tk := range page.Value {
			active = append(active, *tk.ID)
		}
	}
	if strings.Join(active, ",") != "t1,t3" {
		t.Errorf("active tasks = %v, want [t1 t3]", active)
	}
	if _, err := c.DeleteTask(ctx, "job-1", "t3", nil); err != nil {
		t.Fatalf("delete task: %v", err)
	}
	_, err = c.GetTask(ctx, "job-1", "t3", nil)
	wantSDKError(t, "get deleted task", err, 404, "TaskNotFound")
	_, err = c.GetTask(ctx, "nojob", "t1", nil)
	wantSDKError(t, "get task of missing job", err, 404, "JobNotFound")

	// Terminate, then the job takes no more tasks.
	if _, err := c.TerminateJob(ctx, "job-1", &azbatch.TerminateJobOptions{Parameters: &azbatch.TerminateJobContent{TerminationReason: to.Ptr("done early")}}); err != nil {
		t.Fatalf("terminate job: %v", err)
	}
	got, _ = c.GetJob(ctx, "job-1", nil)
	if *got.State != azbatch.JobStateCompleted || got.ExecutionInfo.TerminationReason == nil || *got.ExecutionInfo.TerminationReason != "done early" || got.ExecutionInfo.EndTime == nil {
		t.Errorf("after terminate: %s", mustJSON(got.Job))
	}
	_, err = c.CreateTask(ctx, "job-1", azbatch.CreateTaskContent{ID: to.Ptr("late"), CommandLine: to.Ptr("echo")}, nil)
	wantSDKError(t, "add a task to a completed job", err, 409, "JobCompleted")

	// Jobs list and delete.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("job-2"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("pool-1")}}, nil); err != nil {
		t.Fatal(err)
	}
	var jobs []string
	jp := c.NewListJobsPager(&azbatch.ListJobsOptions{Filter: to.Ptr("state eq 'active'")})
	for jp.More() {
		page, err := jp.NextPage(ctx)
		if err != nil {
			t.Fatalf("list jobs: %v", err)
		}
		for _, jb := range page.Value {
			jobs = append(jobs, *jb.ID)
		}
	}
	if strings.Join(jobs, ",") != "job-2" {
		t.Errorf("active jobs = %v, want [job-2]", jobs)
	}
	if _, err := c.DeleteJob(ctx, "job-1", nil); err != nil {
		t.Fatalf("delete job: %v", err)
	}
	_, err = c.GetJob(ctx, "job-1", nil)
	wantSDKError(t, "get deleted job", err, 404, "JobNotFound")
	_, err = c.GetTask(ctx, "job-1", "t1", nil)
	wantSDKError(t, "get task of deleted job", err, 404, "JobNotFound")

	// Certificates: a cer whose thumbprint is checked, and a pfx.
	der, tp := selfSignedCert(t, "custody-test")
	if _, err := c.CreateCertificate(ctx, azbatch.Certificate{Thumbprint: to.Ptr(strings.ToUpper(tp)), ThumbprintAlgorithm: to.Ptr("sha1"),
		Data: to.Ptr(base64.StdEncoding.EncodeToString(der)), Format: to.Ptr(azbatch.CertificateFormatCER)}, nil); err != nil {
		t.Fatalf("create cer certificate: %v", err)
	}
	_, err = c.CreateCertificate(ctx, azbatch.Certificate{Thumbprint: to.Ptr(tp), ThumbprintAlgorithm: to.Ptr("sha1"),
		Data: to.Ptr(base64.StdEncoding.EncodeToString(der)), Format: to.Ptr(azbatch.CertificateFormatCER)}, nil)
	wantSDKError(t, "create certificate again", err, 409, "CertificateExists")
	_, err = c.CreateCertificate(ctx, azbatch.Certificate{Thumbprint: to.Ptr(strings.Repeat("ab", 20)), ThumbprintAlgorithm: to.Ptr("sha1"),
		Data: to.Ptr(base64.StdEncoding.EncodeToString(der)), Format: to.Ptr(azbatch.CertificateFormatCER)}, nil)
	wantSDKError(t, "create certificate with a wrong thumbprint", err, 400, "CertificateThumbprintMismatch")
	pfx, pfxTP := selfSignedPFX(t, "custody-test-pfx", "pw", nil)
	if _, err := c.CreateCertificate(ctx, azbatch.Certificate{Thumbprint: to.Ptr(pfxTP), ThumbprintAlgorithm: to.Ptr("sha1"),
		Data: to.Ptr(base64.StdEncoding.EncodeToString(pfx)), Format: to.Ptr(azbatch.CertificateFormatPFX), Password: to.Ptr("pw")}, nil); err != nil {
		t.Fatalf("create pfx certificate: %v", err)
	}
	gc, err := c.GetCertificate(ctx, "sha1", tp, nil)
	if err != nil {
		t.Fatalf("get certificate: %v", err)
	}
	if *gc.Thumbprint != tp || *gc.State != azbatch.CertificateStateActive || gc.PublicData == nil || *gc.PublicData != base64.StdEncoding.EncodeToString(der) || gc.Data != nil || gc.Password != nil {
		t.Errorf("get certificate = %s", mustJSON(gc.Certificate))
	}
	gp, err := c.GetCertificate(ctx, "sha1", pfxTP, nil)
	if err != nil || gp.Data != nil || gp.Password != nil {
		t.Errorf("get pfx certificate = %v, %v (data and password must never be returned)", mustJSON(gp.Certificate), err)
	}
	var certs []string
	cp := c.NewListCertificatesPager(nil)
	for cp.More() {
		page, err := cp.NextPage(ctx)
		if err != nil {
			t.Fatalf("list certificates: %v", err)
		}
		for _, ce := range page.Value {
			certs = append(certs, *ce.Thumbprint)
		}
	}
	if len(certs) != 2 {
		t.Errorf("certificates = %v, want 2", certs)
	}
	if _, err := c.DeleteCertificate(ctx, "sha1", tp, nil); err != nil {
		t.Fatalf("delete certificate: %v", err)
	}
	_, err = c.GetCertificate(ctx, "sha1", tp, nil)
	wantSDKError(t, "get deleted certificate", err, 404, "CertificateNotFound")
}

// TestBatchDataPagingAndFilter pages through jobs and tasks with azbatch and
// raw requests: maxresults, absolute odata.nextLink carrying api-version,
// $filter on state, $select.
func TestBatchDataPagingAndFilter(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	mustBatchAccount(t, ts, "rg1", "pager")
	c := dataClient(t, ts, "pager")
	for i := 0; i < 23; i++ {
		id := "job-" + string(rune('a'+i))
		if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr(id), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p")}}, nil); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			if _, err := c.DisableJob(ctx, id, azbatch.DisableJobContent{DisableTasks: to.Ptr(azbatch.DisableJobOptionWait)}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(filter string, max int32) (n, pages int) {
		t.Helper()
		opts := &azbatch.ListJobsOptions{MaxResults: to.Ptr(max)}
		if filter != "" {
			opts.Filter = to.Ptr(filter)
		}
		seen := map[string]bool{}
		p := c.NewListJobsPager(opts)
		for p.More() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("list %q: %v", filter, err)
			}
			pages++
			if len(page.Value) > int(max) {
				t.Errorf("page of %d jobs, maxresults %d", len(page.Value), max)
			}
			for _, j := range page.Value {
				if seen[*j.ID] {
					t.Errorf("job %s listed twice", *j.ID)
				}
				seen[*j.ID] = true
				if filter == "state eq 'disabled'" && *j.State != azbatch.JobStateDisabled {
					t.Errorf("filter %q returned job %s in state %s", filter, *j.ID, *j.State)
				}
			}
		}
		return len(seen), pages
	}
	if n, pages := count("", 5); n != 23 || pages != 5 {
		t.Errorf("all jobs by 5: %d jobs in %d pages, want 23 in 5", n, pages)
	}
	if n, pages := count("state eq 'disabled'", 2); n != 6 || pages != 3 {
		t.Errorf("disabled jobs by 2: %d in %d pages, want 6 in 3", n, pages)
	}
	if n, _ := count("state eq 'active' or state eq 'disabled'", 1000); n != 23 {
		t.Errorf("active or disabled: %d, want 23", n)
	}
	if n, _ := count("state eq 'completed'", 10); n != 0 {
		t.Errorf("completed: %d, want 0", n)
	}

	// The raw nextLink is absolute and keeps api-version, the filter and
	// the page size; $select keeps only the named properties.
	tok := batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	r := batchRaw(t, ts, tok, "GET", "pager", "/jobs?api-version="+dataAPIVersion+"&maxresults=3&%24filter=state%20eq%20%27active%27&%24select=id,state", "")
	wantStatus(t, r, 200)
	var page struct {
		Metadata string           `json:"odata.metadata"`
		Value    []map[string]any `json:"value"`
		NextLink string           `json:"odata.nextLink"`
	}
	if err := json.Unmarshal(r.Body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Value) != 3 || len(page.Value[0]) != 2 || page.Value[0]["id"] == nil || page.Value[0]["state"] != "active" {
		t.Errorf("$select page = %s", r.Body)
	}
	if !strings.HasPrefix(page.NextLink, batchEndpoint(ts, "pager")+"/jobs?") || !strings.Contains(page.NextLink, "api-version="+dataAPIVersion) ||
		!strings.Contains(page.NextLink, "maxresults=3") || !strings.Contains(page.NextLink, "filter=") {
		t.Errorf("odata.nextLink = %q, want an absolute URL with api-version, maxresults and $filter", page.NextLink)
	}
	if !strings.HasSuffix(page.Metadata, "$metadata#jobs") {
		t.Errorf("odata.metadata = %q", page.Metadata)
	}

	// Tasks page the same way, with 100-task collections.
	for k := 0; k < 3; k++ {
		var group []azbatch.CreateTaskContent
		for i := 0; i < 100; i++ {
			group = append(group, azbatch.CreateTaskContent{ID: to.Ptr("t" + itoa(k*100+i)), CommandLine: to.Ptr("echo")})
		}
		res, err := c.CreateTaskCollection(ctx, "job-b", azbatch.TaskGroup{Value: group}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Value {
			if *r.Status != azbatch.TaskAddStatusSuccess {
				t.Fatalf("add %s: %s", *r.TaskID, *r.Status)
			}
		}
	}
	if _, err := c.TerminateTask(ctx, "job-b", "t7", nil); err != nil {
		t.Fatal(err)
	}
	n, pages := 0, 0
	tp := c.NewListTasksPager("job-b", &azbatch.ListTasksOptions{MaxResults: to.Ptr[int32](120), Filter: to.Ptr("state eq 'active'")})
	for tp.More() {
		pg, err := tp.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(pg.Value)
		pages++
	}
	if n != 299 || pages != 3 {
		t.Errorf("active tasks: %d in %d pages, want 299 in 3", n, pages)
	}
	// 101 tasks in one collection are refused as a whole.
	var big []azbatch.CreateTaskContent
	for i := 0; i < 101; i++ {
		big = append(big, azbatch.CreateTaskContent{ID: to.Ptr("b" + itoa(i)), CommandLine: to.Ptr("echo")})
	}
	_, err := c.CreateTaskCollection(ctx, "job-c", azbatch.TaskGroup{Value: big}, nil)
	wantSDKError(t, "add 101 tasks", err, 413, "RequestBodyTooLarge")
	_, err = c.GetJob(ctx, "job-c", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.NewListJobsPager(&azbatch.ListJobsOptions{Filter: to.Ptr("displayName eq 'x'")}).NextPage(ctx)
	wantSDKError(t, "filter on a sealed property", err, 400, "InvalidQueryParameterValue")
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestBatchDataCanary writes distinctive strings into every customer field
// of jobs, tasks and certificates and checks that none of them reaches the
// database files or the server log, while they read back intact.
func TestBatchDataCanary(t *testing.T) {
	logs := &syncBuffer{}
	ts := servertest.New(t, func(c *server.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := context.Background()
	mustBatchAccount(t, ts, "rg1", "canary")
	c := dataClient(t, ts, "canary")
	cn := func(field string) string { return "zq9" + field + "Kx7" }
	canaries := map[string]string{}
	for _, f := range []string{"JobDisplay", "JobMeta", "JobEnv", "JobManagerCmd", "JobManagerEnv", "PrepCmd", "ReleaseCmd", "Subnet",
		"TaskCmd", "TaskDisplay", "TaskEnv", "ResourceURL", "OutputURL", "UploadHeader", "Username", "RegistryPassword", "Image",
		"DependsOn", "Affinity", "CollCmd", "CollEnv", "Terminate", "CertPassword", "CertData", "Wall"} {
		canaries[f] = cn(f)
	}
	canaries["Wall"] = "P918273DT7H"
	_, err := c.CreateJob(ctx, azbatch.CreateJobContent{
		ID: to.Ptr("job1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("pool1")}, UsesTaskDependencies: to.Ptr(true),
		DisplayName:               to.Ptr(canaries["JobDisplay"]),
		Metadata:                  []azbatch.MetadataItem{meta("k", canaries["JobMeta"])},
		CommonEnvironmentSettings: []azbatch.EnvironmentSetting{env("E", canaries["JobEnv"])},
		Constraints:               &azbatch.JobConstraints{MaxWallClockTime: to.Ptr(canaries["Wall"])},
		JobManagerTask: &azbatch.JobManagerTask{ID: to.Ptr("mgr"), CommandLine: to.Ptr(canaries["JobManagerCmd"]),
			EnvironmentSettings: []azbatch.EnvironmentSetting{env("M", canaries["JobManagerEnv"])}},
		JobPreparationTask:   &azbatch.JobPreparationTask{CommandLine: to.Ptr(canaries["PrepCmd"])},
		JobReleaseTask:       &azbatch.JobReleaseTask{CommandLine: to.Ptr(canaries["ReleaseCmd"])},
		NetworkConfiguration: &azbatch.JobNetworkConfiguration{SubnetID: to.Ptr(canaries["Subnet"])},
	}, nil)
	if err != nil {
		t.Fatalf("create job: %v", err)
	}
	_, err = c.CreateTask(ctx, "job1", azbatch.CreateTaskContent{
		ID: to.Ptr("t1"), CommandLine: to.Ptr(canaries["TaskCmd"]), DisplayName: to.Ptr(canaries["TaskDisplay"]),
		EnvironmentSettings: []azbatch.EnvironmentSetting{env("T", canaries["TaskEnv"])},
		ResourceFiles:       []azbatch.ResourceFile{{HTTPURL: to.Ptr("https://example.invalid/" + canaries["ResourceURL"]), FilePath: to.Ptr("in.txt")}},
		OutputFiles: []azbatch.OutputFile{{FilePattern: to.Ptr("*.txt"), Destination: &azbatch.OutputFileDestination{Container: &azbatch.OutputFileBlobContainerDestination{
			ContainerURL:  to.Ptr("https://example.invalid/" + canaries["OutputURL"]),
			UploadHeaders: []azbatch.HTTPHeader{{Name: to.Ptr("x-h"), Value: to.Ptr(canaries["UploadHeader"])}}}},
			UploadOptions: &azbatch.OutputFileUploadConfig{UploadCondition: to.Ptr(azbatch.OutputFileUploadConditionTaskCompletion)}}},
		UserIdentity: &azbatch.UserIdentity{Username: to.Ptr(canaries["Username"])},
		ContainerSettings: &azbatch.TaskContainerSettings{ImageName: to.Ptr(canaries["Image"]),
			Registry: &azbatch.ContainerRegistryReference{Username: to.Ptr("u"), Password: to.Ptr(canaries["RegistryPassword"])}},
		DependsOn:    &azbatch.TaskDependencies{TaskIDs: []string{canaries["DependsOn"]}},
		AffinityInfo: &azbatch.AffinityInfo{AffinityID: to.Ptr(canaries["Affinity"])},
		Constraints:  &azbatch.TaskConstraints{MaxWallClockTime: to.Ptr(canaries["Wall"])},
	}, nil)
	if err != nil {
		t.Fatalf("create task: %v", err)
	}
	res, err := c.CreateTaskCollection(ctx, "job1", azbatch.TaskGroup{Value: []azbatch.CreateTaskContent{
		{ID: to.Ptr("t2"), CommandLine: to.Ptr(canaries["CollCmd"]), EnvironmentSettings: []azbatch.EnvironmentSetting{env("C", canaries["CollEnv"])}},
	}}, nil)
	if err != nil || *res.Value[0].Status != azbatch.TaskAddStatusSuccess {
		t.Fatalf("create task collection: %v", err)
	}
	// A real pfx whose certificate names the canary; the canary is in the
	// file only encrypted under the password canary, so it can reach the
	// database or the log only if the server leaks what it decrypted.
	pfx, tp := selfSignedPFX(t, canaries["CertData"], canaries["CertPassword"], nil)
	certData := base64.StdEncoding.EncodeToString(pfx)
	if _, err := c.CreateCertificate(ctx, azbatch.Certificate{Thumbprint: to.Ptr(tp), ThumbprintAlgorithm: to.Ptr("sha1"),
		Data: to.Ptr(certData), Format: to.Ptr(azbatch.CertificateFormatPFX), Password: to.Ptr(canaries["CertPassword"])}, nil); err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	// A second job, terminated with a reason.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("job2"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("pool1")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TerminateJob(ctx, "job2", &azbatch.TerminateJobOptions{Parameters: &azbatch.TerminateJobContent{TerminationReason: to.Ptr(canaries["Terminate"])}}); err != nil {
		t.Fatal(err)
	}
	// Errors about customer input do not carry it into the log either.
	_, err = c.CreateTask(ctx, "job1", azbatch.CreateTaskContent{ID: to.Ptr("bad"), CommandLine: to.Ptr(canaries["TaskCmd"]),
		Constraints: &azbatch.TaskConstraints{RetentionTime: to.Ptr(canaries["TaskDisplay"])}}, nil)
	wantSDKError(t, "bad retention time", err, 400, "InvalidPropertyValue")

	// Everything reads back (so it was stored).
	j, err := c.GetJob(ctx, "job1", nil)
	if err != nil {
		t.Fatal(err)
	}
	t1, err := c.GetTask(ctx, "job1", "t1", nil)
	if err != nil {
		t.Fatal(err)
	}
	j2, _ := c.GetJob(ctx, "job2", nil)
	readBack := mustJSON(j.Job) + mustJSON(t1.Task) + mustJSON(j2.Job)
	for name, v := range canaries {
		switch name {
		case "CollCmd", "CollEnv", "CertPassword", "CertData":
			continue
		}
		if !strings.Contains(readBack, v) {
			t.Errorf("the %s canary does not read back", name)
		}
	}
	t2, err := c.GetTask(ctx, "job1", "t2", nil)
	if err != nil || *t2.CommandLine != canaries["CollCmd"] {
		t.Errorf("collection task does not read back: %v", err)
	}

	needles := map[string]string{"certificate data (base64)": certData}
	for k, v := range canaries {
		needles[k] = v
	}
	scan := func(when string) {
		t.Helper()
		hay := map[string][]byte{"server log": logs.Bytes()}
		for _, f := range []string{"custody.db", "custody.db-wal"} {
			b, err := os.ReadFile(filepath.Join(ts.DataDir(), f))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			hay[f] = b
		}
		if !bytes.Contains(append(hay["custody.db"], hay["custody.db-wal"]...), []byte("job1")) {
			t.Fatalf("%s: the database files do not hold the plain job id; the scan reads the wrong files", when)
		}
		for h, b := range hay {
			for n, v := range needles {
				if bytes.Contains(b, []byte(v)) {
					t.Errorf("%s: %s contains the %s canary", when, h, n)
				}
			}
		}
	}
	if !bytes.Contains(logs.Bytes(), []byte("/jobs/job1/tasks")) {
		t.Fatal("the log capture misses the data plane's request log")
	}
	scan("while running")
	ts.Close()
	scan("after shutdown")
}

// TestBatchDataAuthAndErrors checks the order of checks on the data plane:
// token (401 with a challenge), account (404 AccountNotFound), role (403),
// and the Batch error shape of each.
func TestBatchDataAuthAndErrors(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	mustBatchAccount(t, ts, "rg1", "authacct")
	admin := batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	path := "/jobs?api-version=" + dataAPIVersion

	r := batchRaw(t, ts, "", "GET", "authacct", path, "")
	wantBatchError(t, r, 401, "")
	if ch := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") {
		t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", ch)
	}
	wantBatchError(t, batchRaw(t, ts, "a.b.c", "GET", "authacct", path, ""), 401, "InvalidAuthenticationToken")
	wantBatchError(t, batchRaw(t, ts, adminToken(t, ts), "GET", "authacct", path, ""), 401, "InvalidAuthenticationToken")
	wantBatchError(t, batchRaw(t, ts, admin, "GET", "nosuchacct", path, ""), 404, "AccountNotFound")
	_, err := dataClient(t, ts, "nosuchacct").GetJob(ctx, "j", nil)
	wantSDKError(t, "azbatch on a missing account", err, 404, "AccountNotFound")

	// A principal without a role is refused; a Reader on the account can
	// read but not write.
	sp := MustServicePrincipal(t, ts, "reader")
	spc := dataClientAs(t, ts, "authacct", spCredential(t, ts, sp.ClientID, sp.Secret))
	_, err = spc.GetJob(ctx, "j", nil)
	wantSDKError(t, "no role", err, 403, "AuthorizationFailed")
	acct, _ := ts.Batch.Account(ctx, "authacct")
	MustAssign(t, ts, adminToken(t, ts), acct.ID, rm.RoleReader, sp.ObjectID)
	_, err = spc.GetJob(ctx, "j", nil)
	wantSDKError(t, "reader reads a missing job", err, 404, "JobNotFound")
	_, err = spc.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p")}}, nil)
	wantSDKError(t, "reader writes", err, 403, "AuthorizationFailed")

	// Unknown paths and methods, and the missing api-version.
	wantBatchError(t, batchRaw(t, ts, admin, "GET", "authacct", "/nothing?api-version="+dataAPIVersion, ""), 404, "InvalidUri")
	wantBatchError(t, batchRaw(t, ts, admin, "DELETE", "authacct", path, ""), 405, "UnsupportedHttpVerb")
	wantBatchError(t, batchRaw(t, ts, admin, "GET", "authacct", "/jobs", ""), 400, "MissingRequiredQueryParameter")
	e := wantBatchError(t, batchRaw(t, ts, admin, "GET", "authacct", "/jobs/nope?api-version="+dataAPIVersion, ""), 404, "JobNotFound")
	if e.Message != nil && !strings.HasPrefix(e.Message.Value, "The specified job does not exist") {
		t.Errorf("JobNotFound message = %q", e.Message.Value)
	}
	r = batchRaw(t, ts, admin, "GET", "authacct", "/jobs/nope?api-version="+dataAPIVersion, "")
	if r.Header.Get("request-id") == "" {
		t.Error("no request-id header")
	}
}

// TestBatchDataLockedAccount locks an account's key: every data-plane call
// answers AccountKeyInaccessible, and deleting the account deletes its data.
func TestBatchDataLockedAccount(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	a := mustBatchAccount(t, ts, "rg1", "lockme")
	c := dataClient(t, ts, "lockme")
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr("t1"), CommandLine: to.Ptr("echo")}, nil); err != nil {
		t.Fatal(err)
	}
	k := a.Key
	k.State, k.Reason, k.Since = batch.KeyInaccessible, "the key was disabled", time.Now()
	if err := ts.Batch.Accounts.UpdateKeyState(ctx, "lockme", k); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"get job":   func() error { _, err := c.GetJob(ctx, "j1", nil); return err },
		"list jobs": func() error { _, err := c.NewListJobsPager(nil).NextPage(ctx); return err },
		"create job": func() error {
			_, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j2"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p")}}, nil)
			return err
		},
		"update job": func() error {
			_, err := c.UpdateJob(ctx, "j1", azbatch.UpdateJobContent{Priority: to.Ptr[int32](1)}, nil)
			return err
		},
		"delete job": func() error { _, err := c.DeleteJob(ctx, "j1", nil); return err },
		"disable job": func() error {
			_, err := c.DisableJob(ctx, "j1", azbatch.DisableJobContent{DisableTasks: to.Ptr(azbatch.DisableJobOptionWait)}, nil)
			return err
		},
		"get task":   func() error { _, err := c.GetTask(ctx, "j1", "t1", nil); return err },
		"list tasks": func() error { _, err := c.NewListTasksPager("j1", nil).NextPage(ctx); return err },
		"add tasks": func() error {
			_, err := c.CreateTaskCollection(ctx, "j1", azbatch.TaskGroup{Value: []azbatch.CreateTaskContent{{ID: to.Ptr("t2"), CommandLine: to.Ptr("echo")}}}, nil)
			return err
		},
		"delete task":       func() error { _, err := c.DeleteTask(ctx, "j1", "t1", nil); return err },
		"task counts":       func() error { _, err := c.GetJobTaskCounts(ctx, "j1", nil); return err },
		"list certificates": func() error { _, err := c.NewListCertificatesPager(nil).NextPage(ctx); return err },
		"create certificate": func() error {
			pfx, tp := selfSignedPFX(t, "locked", "p", nil)
			_, err := c.CreateCertificate(ctx, azbatch.Certificate{Thumbprint: to.Ptr(tp), ThumbprintAlgorithm: to.Ptr("sha1"),
				Data: to.Ptr(base64.StdEncoding.EncodeToString(pfx)), Password: to.Ptr("p")}, nil)
			return err
		},
	}
	for name, call := range calls {
		err := call()
		wantSDKError(t, name, err, 409, "AccountKeyInaccessible")
		var re *azcore.ResponseError
		if errors.As(err, &re) && !strings.Contains(re.Error(), "the key was disabled") {
			t.Errorf("%s: the error does not give the reason: %v", name, err)
		}
	}
	if err := ts.Batch.Delete(ctx, "lockme"); err != nil {
		t.Fatalf("delete locked account: %v", err)
	}
	for _, table := range []string{"batch_jobs", "batch_tasks", "batch_certificates"} {
		var n int
		if err := ts.DB.SQL().QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s has %d rows after the account was deleted (%v)", table, n, err)
		}
	}
}

// TestBatchDataManyTasksThroughTheSDK: the azbatch pager pages through a
// job's tasks across odata.nextLinks, each once in id order; a filter the
// server cannot select by index comes back in short (even empty) pages with
// a nextLink, which the pager follows to every match; a job of more than
// 1,000 tasks is deleted in the background, showing deleting or gone, never
// accepting tasks, and is gone in the end.
func TestBatchDataManyTasksThroughTheSDK(t *testing.T) {
	ts := servertest.New(t, nil)
	ctx := context.Background()
	mustBatchAccount(t, ts, "rg1", "many")
	c := dataClient(t, ts, "many")
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("big"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("none")}}, nil); err != nil {
		t.Fatal(err)
	}
	const n = 1500
	for i := 0; i < n; i += 100 {
		g := azbatch.TaskGroup{}
		for k := i; k < i+100; k++ {
			g.Value = append(g.Value, azbatch.CreateTaskContent{ID: to.Ptr(fmt.Sprintf("t%04d", k)), CommandLine: to.Ptr("true")})
		}
		res, err := c.CreateTaskCollection(ctx, "big", g, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Value {
			if *r.Status != azbatch.TaskAddStatusSuccess {
				t.Fatalf("add %s: %s", *r.TaskID, *r.Status)
			}
		}
	}
	list := func(opts *azbatch.ListTasksOptions) (ids []string, pages int) {
		t.Helper()
		p := c.NewListTasksPager("big", opts)
		for p.More() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, tk := range page.Value {
				ids = append(ids, *tk.ID)
			}
		}
		return ids, pages
	}
	ids, pages := list(nil)
	if len(ids) != n || pages != 2 {
		t.Fatalf("listed %d tasks in %d pages, want %d in 2", len(ids), pages, n)
	}
	for i, id := range ids {
		if want := fmt.Sprintf("t%04d", i); id != want {
			t.Fatalf("task %d listed is %s, want %s", i, id, want)
		}
	}
	ids, pages = list(&azbatch.ListTasksOptions{Filter: to.Ptr("id eq 't1499' or id eq 't0003'"), MaxResults: to.Ptr[int32](10)})
	if strings.Join(ids, ",") != "t0003,t1499" || pages < n/110 {
		t.Fatalf("filter on ids: %v in %d pages", ids, pages)
	}
	tc, err := c.GetJobTaskCounts(ctx, "big", nil)
	if err != nil || *tc.TaskCounts.Active != n {
		t.Fatalf("task counts: %+v %v", tc.TaskCounts, err)
	}

	if _, err := c.DeleteJob(ctx, "big", nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		j, err := c.GetJob(ctx, "big", nil)
		if err != nil {
			wantSDKError(t, "get the deleted job", err, 404, "JobNotFound")
			break
		}
		if *j.State != azbatch.JobStateDeleting {
			t.Fatalf("job being deleted is %s", *j.State)
		}
		_, err = c.CreateTask(ctx, "big", azbatch.CreateTaskContent{ID: to.Ptr("late"), CommandLine: to.Ptr("true")}, nil)
		var re *azcore.ResponseError
		if !errors.As(err, &re) || (re.ErrorCode != "JobBeingDeleted" && re.ErrorCode != "JobNotFound") {
			t.Fatalf("add a task to a job being deleted: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the job is still there 30 s after its delete")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
