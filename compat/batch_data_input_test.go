package compat_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"custody/server/servertest"
)

// batchDataFixture is an account with job j (tasks allowed to depend on
// each other) holding task t, for input tests.
func batchDataFixture(tb testing.TB) (*servertest.TestServer, string) {
	tb.Helper()
	ts := servertest.New(tb, nil)
	mustBatchAccount(tb, ts, "rg1", "input")
	tok := batchToken(tb, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	q := "?api-version=" + dataAPIVersion
	wantStatus(tb, batchRaw(tb, ts, tok, "POST", "input", "/jobs"+q, `{"id":"j","poolInfo":{"poolId":"p"},"usesTaskDependencies":true}`), 201)
	wantStatus(tb, batchRaw(tb, ts, tok, "POST", "input", "/jobs"+q, `{"id":"plain","poolInfo":{"poolId":"p"}}`), 201)
	wantStatus(tb, batchRaw(tb, ts, tok, "POST", "input", "/jobs/j/tasks"+q, `{"id":"t","commandLine":"echo"}`), 201)
	return ts, tok
}

// TestBatchDataBadInput sends malformed and rule-breaking requests: each is
// a 400 (or 413) in the Batch error shape naming the problem, and changes
// nothing.
func TestBatchDataBadInput(t *testing.T) {
	ts, tok := batchDataFixture(t)
	q := "?api-version=" + dataAPIVersion
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"EmptyBody", "POST", "/jobs", ``, 400, "InvalidRequestBody"},
		{"Malformed", "POST", "/jobs", `{`, 400, "InvalidRequestBody"},
		{"Array", "POST", "/jobs", `[]`, 400, "InvalidRequestBody"},
		{"Null", "POST", "/jobs", `null`, 400, "InvalidPropertyValue"},
		{"BadJobID", "POST", "/jobs", `{"id":"bad id","poolInfo":{"poolId":"p"}}`, 400, "InvalidPropertyValue"},
		{"LongJobID", "POST", "/jobs", `{"id":"` + strings.Repeat("a", 65) + `","poolInfo":{"poolId":"p"}}`, 400, "InvalidPropertyValue"},
		{"NoPool", "POST", "/jobs", `{"id":"j2"}`, 400, "MissingRequiredProperty"},
		{"AutoPoolNoPool", "POST", "/jobs", `{"id":"j2","poolInfo":{"autoPoolSpecification":{"poolLifetimeOption":"job"}}}`, 400, "MissingRequiredProperty"},
		{"AutoPoolAndPoolID", "POST", "/jobs", `{"id":"j2","poolInfo":{"poolId":"p","autoPoolSpecification":{"poolLifetimeOption":"job","pool":{"vmSize":"standard_d2s_v3"}}}}`, 400, "InvalidPropertyValue"},
		{"AutoPoolLifetime", "POST", "/jobs", `{"id":"j2","poolInfo":{"autoPoolSpecification":{"poolLifetimeOption":"forever","pool":{"vmSize":"standard_d2s_v3"}}}}`, 400, "InvalidPropertyValue"},
		{"AutoPoolScheduleLifetime", "POST", "/jobs", `{"id":"j2","poolInfo":{"autoPoolSpecification":{"poolLifetimeOption":"jobschedule","pool":{"vmSize":"standard_d2s_v3"}}}}`, 400, "InvalidPropertyValue"},
		{"AutoPoolPrefix", "POST", "/jobs", `{"id":"j2","poolInfo":{"autoPoolSpecification":{"poolLifetimeOption":"job","autoPoolIdPrefix":"a b","pool":{"vmSize":"standard_d2s_v3"}}}}`, 400, "InvalidPropertyValue"},
		{"AutoPoolVMSize", "POST", "/jobs", `{"id":"j2","poolInfo":{"autoPoolSpecification":{"poolLifetimeOption":"job","pool":{"vmSize":"no_such_size"}}}}`, 400, ""},
		{"AutoPoolSpecType", "POST", "/jobs", `{"id":"j2","poolInfo":{"autoPoolSpecification":{"poolLifetimeOption":"job","pool":{"targetDedicatedNodes":"two"}}}}`, 400, "InvalidPropertyValue"},
		{"AutoPoolIdentity", "POST", "/jobs", `{"id":"j2","poolInfo":{"autoPoolSpecification":{"poolLifetimeOption":"job","pool":{"vmSize":"standard_d2s_v3","identity":{"type":"UserAssigned","userAssignedIdentities":[{"resourceId":"/subscriptions/x/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i"}]}}}}}`, 400, "InvalidPropertyValue"},
		{"AutoPoolPatch", "PATCH", "/jobs/j", `{"poolInfo":{"autoPoolSpecification":{"poolLifetimeOption":"job","pool":{"vmSize":"standard_d2s_v3"}}}}`, 400, "InvalidPropertyValue"},
		{"Priority", "POST", "/jobs", `{"id":"j2","poolInfo":{"poolId":"p"},"priority":5000}`, 400, "InvalidPropertyValue"},
		{"PriorityType", "POST", "/jobs", `{"id":"j2","poolInfo":{"poolId":"p"},"priority":"high"}`, 400, "InvalidRequestBody"},
		{"PriorityOverflow", "POST", "/jobs", `{"id":"j2","poolInfo":{"poolId":"p"},"priority":99999999999}`, 400, "InvalidRequestBody"},
		{"Duration", "POST", "/jobs", `{"id":"j2","poolInfo":{"poolId":"p"},"constraints":{"maxWallClockTime":"forever"}}`, 400, "InvalidPropertyValue"},
		{"OnAllTasksComplete", "POST", "/jobs", `{"id":"j2","poolInfo":{"poolId":"p"},"onAllTasksComplete":"explode"}`, 400, "InvalidPropertyValue"},
		{"ReleaseWithoutPrep", "POST", "/jobs", `{"id":"j2","poolInfo":{"poolId":"p"},"jobReleaseTask":{"commandLine":"x"}}`, 400, "InvalidPropertyValue"},
		{"ManagerWithoutCommand", "POST", "/jobs", `{"id":"j2","poolInfo":{"poolId":"p"},"jobManagerTask":{"id":"m"}}`, 400, "MissingRequiredProperty"},
		{"EnvWithoutName", "POST", "/jobs", `{"id":"j2","poolInfo":{"poolId":"p"},"commonEnvironmentSettings":[{"value":"v"}]}`, 400, "MissingRequiredProperty"},
		{"Exists", "POST", "/jobs", `{"id":"J","poolInfo":{"poolId":"p"}}`, 409, "JobExists"},
		{"TextBody", "POST", "/jobs", `id=j`, 400, "InvalidRequestBody"},
		{"TaskNoCommand", "POST", "/jobs/j/tasks", `{"id":"t2"}`, 400, "MissingRequiredProperty"},
		{"TaskDepsNotAllowed", "POST", "/jobs/plain/tasks", `{"id":"t2","commandLine":"x","dependsOn":{"taskIds":["t"]}}`, 400, "TaskDependenciesNotSpecifiedOnJob"},
		{"TaskDependsOnItself", "POST", "/jobs/j/tasks", `{"id":"t2","commandLine":"x","dependsOn":{"taskIds":["T2"]}}`, 400, "InvalidPropertyValue"},
		{"TaskRange", "POST", "/jobs/j/tasks", `{"id":"t2","commandLine":"x","dependsOn":{"taskIdRanges":[{"start":5,"end":1}]}}`, 400, "InvalidPropertyValue"},
		{"TaskSlots", "POST", "/jobs/j/tasks", `{"id":"t2","commandLine":"x","requiredSlots":0}`, 400, "InvalidPropertyValue"},
		{"TaskUserBoth", "POST", "/jobs/j/tasks", `{"id":"t2","commandLine":"x","userIdentity":{"username":"u","autoUser":{}}}`, 400, "InvalidPropertyValue"},
		{"TaskAutoUserScope", "POST", "/jobs/j/tasks", `{"id":"t2","commandLine":"x","userIdentity":{"autoUser":{"scope":"world"}}}`, 400, "InvalidPropertyValue"},
		{"TaskResourceFile", "POST", "/jobs/j/tasks", `{"id":"t2","commandLine":"x","resourceFiles":[{"filePath":"a"}]}`, 400, "InvalidPropertyValue"},
		{"TaskOutputFile", "POST", "/jobs/j/tasks", `{"id":"t2","commandLine":"x","outputFiles":[{"filePattern":"*","destination":{},"uploadOptions":{"uploadCondition":"tasksuccess"}}]}`, 400, "MissingRequiredProperty"},
		{"TaskExitAction", "POST", "/jobs/j/tasks", `{"id":"t2","commandLine":"x","exitConditions":{"default":{"jobAction":"explode"}}}`, 400, "InvalidPropertyValue"},
		{"TaskContainer", "POST", "/jobs/j/tasks", `{"id":"t2","commandLine":"x","containerSettings":{}}`, 400, "MissingRequiredProperty"},
		{"TaskExists", "POST", "/jobs/j/tasks", `{"id":"T","commandLine":"x"}`, 409, "TaskExists"},
		{"TaskOnMissingJob", "POST", "/jobs/nojob/tasks", `{"id":"t2","commandLine":"x"}`, 404, "JobNotFound"},
		{"CollectionNotArray", "POST", "/jobs/j/addtaskcollection", `{"value":5}`, 400, "InvalidRequestBody"},
		{"CollectionEmpty", "POST", "/jobs/j/addtaskcollection", `{"value":[]}`, 400, "MissingRequiredProperty"},
		{"Disable", "POST", "/jobs/j/disable", `{"disableTasks":"nope"}`, 400, "InvalidPropertyValue"},
		{"DisableNoBody", "POST", "/jobs/j/disable", ``, 400, "InvalidRequestBody"},
		{"TerminateReasonType", "POST", "/jobs/j/terminate", `{"terminateReason":5}`, 400, "InvalidRequestBody"},
		{"PatchType", "PATCH", "/jobs/j", `{"priority":"x"}`, 400, "InvalidRequestBody"},
		{"PatchPool", "PATCH", "/jobs/j", `{"poolInfo":{}}`, 400, "MissingRequiredProperty"},
		{"PutNoPool", "PUT", "/jobs/j", `{}`, 400, "MissingRequiredProperty"},
		{"PutTaskDuration", "PUT", "/jobs/j/tasks/t", `{"constraints":{"retentionTime":"1 day"}}`, 400, "InvalidPropertyValue"},
		{"MaxResultsZero", "GET", "/jobs?maxresults=0&", ``, 400, "InvalidQueryParameterValue"},
		{"MaxResultsText", "GET", "/jobs?maxresults=ten&", ``, 400, "InvalidQueryParameterValue"},
		{"Filter", "GET", "/jobs?%24filter=" + url.QueryEscape("state eq") + "&", ``, 400, "InvalidQueryParameterValue"},
		{"TaskFilter", "GET", "/jobs/j/tasks?%24filter=" + url.QueryEscape("commandLine eq 'x'") + "&", ``, 400, "InvalidQueryParameterValue"},
		{"CertThumbprint", "POST", "/certificates", `{"thumbprint":"zz","thumbprintAlgorithm":"sha1","data":"AA==","password":"p"}`, 400, "InvalidPropertyValue"},
		{"CertAlgorithm", "POST", "/certificates", `{"thumbprint":"ab","thumbprintAlgorithm":"md5","data":"AA==","password":"p"}`, 400, "InvalidPropertyValue"},
		{"CertBase64", "POST", "/certificates", `{"thumbprint":"ab","thumbprintAlgorithm":"sha1","data":"%%%","password":"p"}`, 400, "InvalidPropertyValue"},
		{"CertNoData", "POST", "/certificates", `{"thumbprint":"ab","thumbprintAlgorithm":"sha1"}`, 400, "MissingRequiredProperty"},
		{"CertPfxNoPassword", "POST", "/certificates", `{"thumbprint":"ab","thumbprintAlgorithm":"sha1","data":"AA=="}`, 400, "MissingRequiredProperty"},
		{"CertCerPassword", "POST", "/certificates", `{"thumbprint":"ab","thumbprintAlgorithm":"sha1","data":"AA==","certificateFormat":"cer","password":"p"}`, 400, "InvalidPropertyValue"},
		{"CertCerNotX509", "POST", "/certificates", `{"thumbprint":"ab","thumbprintAlgorithm":"sha1","data":"AA==","certificateFormat":"cer"}`, 400, "InvalidCertificateData"},
		{"CertFormat", "POST", "/certificates", `{"thumbprint":"ab","thumbprintAlgorithm":"sha1","data":"AA==","certificateFormat":"pem"}`, 400, "InvalidPropertyValue"},
		{"CertTooLarge", "POST", "/certificates", `{"thumbprint":"ab","thumbprintAlgorithm":"sha1","password":"p","data":"` + strings.Repeat("AAAA", 4000) + `"}`, 400, "InvalidPropertyValue"},
		{"CertPathNoThumbprint", "GET", "/certificates(thumbprintAlgorithm=sha1)", ``, 400, "InvalidUri"},
		{"CertPathGarbage", "GET", "/certificates(x)", ``, 400, "InvalidUri"},
		{"CertPathBadThumbprint", "GET", "/certificates(thumbprintAlgorithm=sha1,thumbprint=xyz)", ``, 400, "InvalidPropertyValue"},
		{"CertNotFound", "DELETE", "/certificates(thumbprintAlgorithm=sha1,thumbprint=abcd)", ``, 404, "CertificateNotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if strings.HasSuffix(path, "&") {
				path += "api-version=" + dataAPIVersion
			} else {
				path += q
			}
			r := batchRaw(t, ts, tok, tt.method, "input", path, tt.body)
			wantBatchError(t, r, tt.status, tt.code)
		})
	}
	// Nothing was created or changed.
	c := dataClient(t, ts, "input")
	ctx := context.Background()
	n := 0
	p := c.NewListJobsPager(nil)
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
	}
	if n != 2 {
		t.Errorf("%d jobs after bad input, want 2", n)
	}
	j, err := c.GetJob(ctx, "j", nil)
	if err != nil || *j.State != "active" || j.Priority != nil {
		t.Errorf("job j changed by bad input: %v %v", mustJSON(j.Job), err)
	}
}

// batchFuzzTargets are the data-plane operations that take a body.
var batchFuzzTargets = []struct{ method, path string }{
	{"POST", "/jobs"},
	{"PUT", "/jobs/j"},
	{"PATCH", "/jobs/j"},
	{"POST", "/jobs/j/disable"},
	{"POST", "/jobs/j/terminate"},
	{"POST", "/jobs/j/tasks"},
	{"POST", "/jobs/j/addtaskcollection"},
	{"PUT", "/jobs/j/tasks/t"},
	{"POST", "/certificates"},
}

// FuzzBatchDataBody sends arbitrary bodies to every data-plane operation
// that takes one: the answer is never a server error, and an error answer is
// in the Batch shape.
func FuzzBatchDataBody(f *testing.F) {
	seeds := []string{
		`{"id":"f1","poolInfo":{"poolId":"p"}}`, `{"id":"f2","poolInfo":{"poolId":"p"},"priority":-1000,"metadata":[{"name":"a","value":"b"}]}`,
		`{"poolInfo":{"poolId":"p"},"constraints":{"maxWallClockTime":"PT1H","maxTaskRetryCount":-1}}`,
		`{"priority":1}`, `{"disableTasks":"requeue"}`, `{"terminateReason":"stop"}`,
		`{"id":"ft","commandLine":"echo","dependsOn":{"taskIds":["t"],"taskIdRanges":[{"start":1,"end":2}]}}`,
		`{"value":[{"id":"c1","commandLine":"echo"},{"id":"c1","commandLine":"echo"},{"id":"","commandLine":""}]}`,
		`{"value":[null]}`, `{"value":null}`, `{"constraints":{"maxWallClockTime":"P1DT2H3M4.5S"}}`, `{"constraints":null}`,
		`{"thumbprint":"ab","thumbprintAlgorithm":"sha1","data":"AA==","password":"p"}`,
		`{"thumbprint":"ab cd","thumbprintAlgorithm":"SHA1","data":"AA==","certificateFormat":"cer"}`,
		`{"id":"f3","poolInfo":{"poolId":"p"},"jobManagerTask":{"id":"m","commandLine":"x","userIdentity":{"autoUser":{"scope":"pool","elevationLevel":"admin"}}}}`,
		`{"id":"f4","poolInfo":{"poolId":"p"},"jobPreparationTask":{"commandLine":"x"},"jobReleaseTask":{"commandLine":"y","maxWallClockTime":"PT"}}`,
		`{"id":"ft2","commandLine":"x","exitConditions":{"exitCodes":[{"code":1,"exitOptions":{"jobAction":"terminate"}}],"exitCodeRanges":[{"start":2,"end":1,"exitOptions":{}}]}}`,
		`{"id":"ft3","commandLine":"x","outputFiles":[{"filePattern":"*","destination":{"container":{"containerUrl":"u","uploadHeaders":[{"name":""}]}},"uploadOptions":{"uploadCondition":"x"}}]}`,
		``, `null`, `[]`, `{`, `}`, `"x"`, `1e999`, `{"id":"a"}{}`, "\xff\xfe", `{"id":"\ud800"}`, `{"id":"\u0000","poolInfo":{"poolId":"\u0000"}}`,
		`{"id":"` + strings.Repeat("x", 5000) + `"}`, `{"displayName":"` + strings.Repeat("\u00e9", 1100) + `","id":"f5","poolInfo":{"poolId":"p"}}`,
		`{"id":"f6","poolInfo":{"poolId":"p","autoPoolSpecification":null}}`, `{"requiredSlots":2147483648}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), s)
	}
	ts, tok := batchDataFixture(f)
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		target := batchFuzzTargets[int(which)%len(batchFuzzTargets)]
		req, err := http.NewRequestWithContext(context.Background(), target.method, ts.URL("input.batch")+target.path+"?api-version="+dataAPIVersion, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json; odata=minimalmetadata")
		r := MustSend(t, ts, req)
		if r.Status >= 500 {
			t.Fatalf("%s %s with body %q: %d %s", target.method, target.path, body, r.Status, r.Body)
		}
		if r.Status >= 400 {
			wantBatchError(t, r, r.Status, "")
		}
		if !utf8.Valid(r.Body) {
			t.Errorf("response is not UTF-8: %q", r.Body)
		}
	})
}

// FuzzBatchDataQuery sends arbitrary $filter, $select and maxresults values
// and paths to the list operations.
func FuzzBatchDataQuery(f *testing.F) {
	for _, s := range []string{
		"state eq 'active'", "state eq 'active' or state eq 'completed'", "(state eq 'a') and not (id eq 'b')",
		"startswith(id,'j')", "state eq", "'", "((((", "id eq 'it''s'", "state eq 'active' and", "\x00", "state eq '\u00e9'",
	} {
		f.Add(uint8(0), s, "id,state", "5")
		f.Add(uint8(1), s, "", "0")
		f.Add(uint8(2), s, "thumbprint", "-1")
		f.Add(uint8(3), s, ",,", "1001")
	}
	ts, tok := batchDataFixture(f)
	paths := []string{"/jobs", "/jobs/j/tasks", "/certificates", "/jobs/j", "/jobs/j/tasks/t", "/certificates(thumbprintAlgorithm=sha1,thumbprint=ab)"}
	f.Fuzz(func(t *testing.T, which uint8, filter, sel, max string) {
		v := url.Values{"api-version": {dataAPIVersion}, "$filter": {filter}, "$select": {sel}, "maxresults": {max}}
		req, err := http.NewRequestWithContext(context.Background(), "GET", ts.URL("input.batch")+paths[int(which)%len(paths)]+"?"+v.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		r := MustSend(t, ts, req)
		if r.Status >= 500 {
			t.Fatalf("GET %s: %d %s", req.URL, r.Status, r.Body)
		}
		if r.Status >= 400 {
			wantBatchError(t, r, r.Status, "")
		}
	})
}
