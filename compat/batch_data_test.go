package compat_test

import (
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
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

	"custody/batch"
	"custody/rm"
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
func TestBatchDataLifecycle(t *testing.T) {
	ts := servertest.New(t, nil)
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
	if *counts.TaskCounts.Active != 2 || *counts.TaskCounts.Completed != 1 {
		t.Errorf("task counts = %s", mustJSON(counts.TaskCounts))
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
	pfxTP := strings.Repeat("0f", 20)
	if _, err := c.CreateCertificate(ctx, azbatch.Certificate{Thumbprint: to.Ptr(pfxTP), ThumbprintAlgorithm: to.Ptr("sha1"),
		Data: to.Ptr(base64.StdEncoding.EncodeToString([]byte("pfx bytes"))), Format: to.Ptr(azbatch.CertificateFormatPFX), Password: to.Ptr("pw")}, nil); err != nil {
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
