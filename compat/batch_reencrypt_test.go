package compat_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

	"custody/batch"
	"custody/server"
	"custody/server/servertest"
)

// reencryptionState is properties.reencryption of an account.
type reencryptionState struct {
	Status           string `json:"status"`
	RecordsDone      int64  `json:"recordsDone"`
	RecordsTotal     int64  `json:"recordsTotal"`
	PercentComplete  int    `json:"percentComplete"`
	StartTime        string `json:"startTime"`
	EstimatedEndTime string `json:"estimatedEndTime"`
	EndTime          string `json:"endTime"`
	From             uint32 `json:"fromDataKeyGeneration"`
	To               uint32 `json:"toDataKeyGeneration"`
	Error            string `json:"error"`
}

func reencryptionOf(tb testing.TB, ts *servertest.TestServer, tok, rg, account string) *reencryptionState {
	tb.Helper()
	r := MustARM(tb, ts, tok, "GET", batchAccountPath(ts, rg, account)+"?api-version="+batchAPIVersion, "")
	if r.Status != http.StatusOK {
		tb.Fatalf("GET account %s: %d %s", account, r.Status, r.Body)
	}
	var body struct {
		Properties struct {
			Reencryption *reencryptionState `json:"reencryption"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		tb.Fatal(err)
	}
	return body.Properties.Reencryption
}

// addTasks adds tasks t{from}..t{from+n-1} to job, each with its own
// command line, environment and display name.
func addTasks(tb testing.TB, c *azbatch.Client, job string, from, n int) {
	tb.Helper()
	for i := from; i < from+n; i += 100 {
		var g azbatch.TaskGroup
		for j := i; j < min(i+100, from+n); j++ {
			id := "t" + strconv.Itoa(j)
			g.Value = append(g.Value, azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr("/bin/echo secret-" + id),
				DisplayName: to.Ptr("task " + id), EnvironmentSettings: []azbatch.EnvironmentSetting{env("TOKEN", "value-"+id)}})
		}
		if _, err := c.CreateTaskCollection(context.Background(), job, g, nil); err != nil {
			tb.Fatalf("add tasks %d..: %v", i, err)
		}
	}
}

// taskSnapshot lists every task of job as JSON, by id.
func taskSnapshot(tb testing.TB, c *azbatch.Client, job string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	p := c.NewListTasksPager(job, &azbatch.ListTasksOptions{MaxResults: to.Ptr[int32](1000)})
	for p.More() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			tb.Fatalf("list tasks: %v", err)
		}
		for _, tk := range page.Value {
			out[*tk.ID] = mustJSON(tk)
		}
	}
	return out
}

// sealedGenerations counts the account's sealed values in every table that
// holds them, by the DEK generation they carry, reading the database
// directly.
func sealedGenerations(tb testing.TB, ts *servertest.TestServer, account string) map[uint32]int {
	tb.Helper()
	gens := map[uint32]int{}
	for _, q := range []string{
		`SELECT spec FROM batch_jobs WHERE account_key = $1`,
		`SELECT spec FROM batch_tasks WHERE account_key = $1`,
		`SELECT failure_message FROM batch_tasks WHERE account_key = $1 AND failure_message IS NOT NULL`,
		`SELECT spec FROM batch_certificates WHERE account_key = $1`,
		`SELECT spec FROM batch_job_schedules WHERE account_key = $1`,
		`SELECT spec FROM compute_pools WHERE account_key = $1`,
	} {
		rows, err := ts.DB.SQL().Query(q, account)
		if err != nil {
			tb.Fatal(err)
		}
		for rows.Next() {
			var v []byte
			if err := rows.Scan(&v); err != nil {
				tb.Fatal(err)
			}
			if len(v) < 5 || v[0] != 1 {
				tb.Fatalf("%s: a value not in the sealed format: %x", q, v)
			}
			gens[binary.BigEndian.Uint32(v[1:5])]++
		}
		rows.Close()
	}
	return gens
}

// TestBatchReencryption re-encrypts an account holding a job, thousands of
// tasks, a certificate and a pool: progress is visible while it runs, reads
// and task submission keep working, a second request is refused, and
// afterwards every record reads back equal, no value of the old generation
// is left in the database and the old DEK is gone from the account row.
func TestBatchReencryption(t *testing.T) { batchReencryption(t, "") }

// TestBatchReencryptionPostgres is the same on PostgreSQL.
func TestBatchReencryptionPostgres(t *testing.T) { batchReencryption(t, MustPostgresDatabase(t)) }

func batchReencryption(t *testing.T, database string) {
	const n = 3000
	ts := servertest.New(t, func(c *server.Config) {
		c.DisableLocalNodes = true
		c.ReencryptBatch = 25 // many small batches: progress is observable
		c.ReencryptSettle = 300 * time.Millisecond
		if database != "" {
			c.Database = database
		}
	})
	ctx := context.Background()
	tok := adminToken(t, ts)
	mustBatchAccount(t, ts, "rg-re", "reacct")
	c := dataClient(t, ts, "reacct")
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("job-1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
		DisplayName: to.Ptr("re job"), Metadata: []azbatch.MetadataItem{meta("owner", "team-re")}}, nil); err != nil {
		t.Fatal(err)
	}
	addTasks(t, c, "job-1", 0, n)
	der, tp := selfSignedCert(t, "re-cert")
	if _, err := c.CreateCertificate(ctx, azbatch.Certificate{Thumbprint: to.Ptr(tp), ThumbprintAlgorithm: to.Ptr("sha1"),
		Data: to.Ptr(base64.StdEncoding.EncodeToString(der)), Format: to.Ptr(azbatch.CertificateFormatCER)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p1"), VMSize: to.Ptr("standard_d2s_v3"),
		DisplayName: to.Ptr("re pool"), Metadata: []azbatch.MetadataItem{meta("cost", "centre-9")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateJobSchedule(ctx, azbatch.CreateJobScheduleContent{ID: to.Ptr("sched-1"),
		Schedule:         &azbatch.JobScheduleConfiguration{DoNotRunUntil: to.Ptr(time.Now().Add(24 * time.Hour))},
		JobSpecification: &azbatch.JobSpecification{PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}, DisplayName: to.Ptr("nightly secret run")}}, nil); err != nil {
		t.Fatal(err)
	}
	before := taskSnapshot(t, c, "job-1")
	if len(before) != n {
		t.Fatalf("%d tasks listed, want %d", len(before), n)
	}
	jobBefore, err := c.GetJob(ctx, "job-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	certBefore, err := c.GetCertificate(ctx, "sha1", tp, nil)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := ts.Batch.Account(ctx, "reacct")
	if err != nil {
		t.Fatal(err)
	}
	oldGen, oldWrapped := acct.Key.Generation, acct.Key.Wrapped.Ciphertext
	var oldTaskSpec []byte
	if err := ts.DB.SQL().QueryRow(`SELECT spec FROM batch_tasks WHERE account_key = 'reacct' AND id_key = 't7'`).Scan(&oldTaskSpec); err != nil {
		t.Fatal(err)
	}
	if g := sealedGenerations(t, ts, "reacct"); g[oldGen] != n+4 || len(g) != 1 {
		t.Fatalf("sealed values by generation before = %v, want %d of generation %d", g, n+4, oldGen)
	}

	path := batchAccountPath(ts, "rg-re", "reacct") + "/reencrypt?api-version=" + batchAPIVersion
	r := MustARM(t, ts, tok, "POST", path, "")
	if r.Status != http.StatusAccepted || r.Header.Get("Location") == "" {
		t.Fatalf("POST reencrypt: %d %s (Location %q)", r.Status, r.Body, r.Header.Get("Location"))
	}
	location := r.Header.Get("Location")
	var accepted struct {
		Status     string `json:"status"`
		Properties struct {
			Reencryption reencryptionState `json:"reencryption"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(r.Body, &accepted); err != nil {
		t.Fatal(err)
	}
	re := accepted.Properties.Reencryption
	if accepted.Status != "InProgress" || re.RecordsTotal != n+4 || re.From != oldGen || re.To != oldGen+1 {
		t.Errorf("accepted body = %s, want InProgress of %d records from generation %d", r.Body, n+4, oldGen)
	}
	wantARMError(t, MustARM(t, ts, tok, "POST", path, ""), http.StatusConflict, "ReencryptionInProgress")

	// While it runs: reads and submissions go on, progress is visible.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var reads, added atomic.Int64
	errs := make(chan error, 4)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := "t" + strconv.Itoa(i*37%n)
			got, err := c.GetTask(ctx, "job-1", id, nil)
			if err != nil {
				errs <- fmt.Errorf("get task %s during re-encryption: %w", id, err)
				return
			}
			if mustJSON(got.Task) != before[id] {
				errs <- fmt.Errorf("task %s during re-encryption = %s, want %s", id, mustJSON(got.Task), before[id])
				return
			}
			reads.Add(1)
		}
	}()
	go func() {
		defer wg.Done()
		for i := n; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := "t" + strconv.Itoa(i)
			if _, err := c.CreateTask(ctx, "job-1", azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr("/bin/echo secret-" + id),
				DisplayName: to.Ptr("task " + id), EnvironmentSettings: []azbatch.EnvironmentSetting{env("TOKEN", "value-"+id)}}, nil); err != nil {
				errs <- fmt.Errorf("add task %s during re-encryption: %w", id, err)
				return
			}
			added.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var progress []string
	deadline := time.Now().Add(2 * time.Minute)
	var final *reencryptionState
	for {
		st := reencryptionOf(t, ts, tok, "rg-re", "reacct")
		if st == nil {
			t.Fatal("properties.reencryption is missing while a re-encryption runs")
		}
		if st.Status == "InProgress" && st.RecordsDone > 0 && st.RecordsDone < st.RecordsTotal {
			if st.StartTime == "" || st.EstimatedEndTime == "" {
				t.Errorf("progress without start or estimated end: %+v", st)
			}
			progress = append(progress, fmt.Sprintf("%d/%d", st.RecordsDone, st.RecordsTotal))
		}
		if st.Status == "Succeeded" {
			final = st
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("re-encryption did not finish within 2 minutes: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("progress seen: %d readings (%s ... %s); %d reads and %d task submissions during the re-encryption",
		len(progress), first(progress), last(progress), reads.Load(), added.Load())
	if len(progress) < 2 {
		t.Errorf("saw %d progress readings strictly between 0 and total, want at least 2", len(progress))
	}
	if reads.Load() == 0 || added.Load() == 0 {
		t.Errorf("%d reads and %d submissions completed during the re-encryption, want some of each", reads.Load(), added.Load())
	}
	if final.RecordsDone != final.RecordsTotal || final.RecordsTotal < n+4 || final.EndTime == "" || final.To != oldGen+1 {
		t.Errorf("final state = %+v", final)
	}

	// The operation's Location answers the account when done.
	lr, err := http.NewRequest("GET", location, nil)
	if err != nil {
		t.Fatal(err)
	}
	lr.Header.Set("Authorization", "Bearer "+tok)
	if res := MustSend(t, ts, lr); res.Status != http.StatusOK || !strings.Contains(string(res.Body), `"Succeeded"`) {
		t.Errorf("GET operation result: %d %s", res.Status, res.Body)
	}

	// Every record reads back equal.
	after := taskSnapshot(t, c, "job-1")
	if len(after) != n+int(added.Load()) {
		t.Errorf("%d tasks after, want %d", len(after), n+int(added.Load()))
	}
	for id, want := range before {
		if after[id] != want {
			t.Fatalf("task %s after re-encryption = %s, want %s", id, after[id], want)
		}
	}
	for i := n; i < n+int(added.Load()); i++ {
		id := "t" + strconv.Itoa(i)
		if !strings.Contains(after[id], "secret-"+id) {
			t.Errorf("task %s added during the re-encryption = %s", id, after[id])
		}
	}
	if got, err := c.GetJob(ctx, "job-1", nil); err != nil || mustJSON(got.Job) != mustJSON(jobBefore.Job) {
		t.Errorf("job after = %v %v, want %s", mustJSON(got.Job), err, mustJSON(jobBefore.Job))
	}
	if got, err := c.GetCertificate(ctx, "sha1", tp, nil); err != nil || mustJSON(got.Certificate) != mustJSON(certBefore.Certificate) {
		t.Errorf("certificate after = %v %v", mustJSON(got.Certificate), err)
	}
	if got, err := c.GetJobSchedule(ctx, "sched-1", nil); err != nil || *got.JobSpecification.DisplayName != "nightly secret run" {
		t.Errorf("job schedule after = %v %v", mustJSON(got.JobSchedule), err)
	}
	if got, err := c.GetPool(ctx, "p1", nil); err != nil || *got.DisplayName != "re pool" || *got.Metadata[0].Value != "centre-9" {
		t.Errorf("pool after = %v %v", mustJSON(got.Pool), err)
	}

	// No value of the old generation is left; the old DEK is gone.
	g := sealedGenerations(t, ts, "reacct")
	if g[oldGen] != 0 || g[oldGen+1] != n+4+int(added.Load()) {
		t.Errorf("sealed values by generation after = %v, want all %d of generation %d", g, n+4+int(added.Load()), oldGen+1)
	}
	var oldCol string
	var oldColGen int64
	var wrapped []byte
	if err := ts.DB.SQL().QueryRow(`SELECT dek_old_generation, dek_old, dek_wrapped FROM batch_accounts WHERE name_key = 'reacct'`).Scan(&oldColGen, &oldCol, &wrapped); err != nil {
		t.Fatal(err)
	}
	if oldColGen != 0 || oldCol != "" || string(wrapped) == string(oldWrapped) {
		t.Errorf("account row after: old generation %d, old DEK %q, wrapped DEK unchanged %v", oldColGen, oldCol, string(wrapped) == string(oldWrapped))
	}
	a, dek, err := ts.Batch.DEK(ctx, "reacct")
	if err != nil {
		t.Fatal(err)
	}
	if a.Key.Old != nil || dek.OldGeneration() != 0 || dek.Generation() != oldGen+1 {
		t.Errorf("after: account old DEK %v, DEK generation %d (old %d)", a.Key.Old, dek.Generation(), dek.OldGeneration())
	}
	if _, err := dek.Open(a.UID, batch.TaskRef("job-1", "t7"), oldTaskSpec); err == nil {
		t.Error("a ciphertext of the old generation still opens with the account's DEK")
	}

	// A second re-encryption may start now.
	if r := MustARM(t, ts, tok, "POST", path, ""); r.Status != http.StatusAccepted {
		t.Errorf("second POST reencrypt after the first finished: %d %s", r.Status, r.Body)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}
