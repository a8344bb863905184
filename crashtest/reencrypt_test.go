package crashtest_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"custody/sqlstore"
)

type reencryption struct {
	Status       string `json:"status"`
	RecordsDone  int64  `json:"recordsDone"`
	RecordsTotal int64  `json:"recordsTotal"`
	To           uint32 `json:"toDataKeyGeneration"`
}

// listTasks reads every task of job1 through the data plane, as raw JSON
// by id.
func (p *proc) listTasks(batchURL string) map[string]string {
	p.t.Helper()
	out := map[string]string{}
	next := batchURL + "/jobs/job1/tasks?api-version=" + batchAPI + "&maxresults=1000"
	for next != "" {
		var page struct {
			Value    []json.RawMessage `json:"value"`
			NextLink string            `json:"odata.nextLink"`
		}
		p.must("GET", next, batchScope, "", 200).decode(p.t, &page)
		for _, v := range page.Value {
			var id struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(v, &id); err != nil {
				p.t.Fatal(err)
			}
			out[id.ID] = string(v)
		}
		next = page.NextLink
	}
	return out
}

// TestReencryptionSurvivesSIGKILL re-encrypts an account of 20,000 tasks
// while killing the server with SIGKILL at random points, restarting it on
// the same data directory each time: the re-encryption resumes from its
// stored cursor and finishes, every task reads back equal, every read in
// between works, and the database holds no value of the old generation
// and no old DEK.
func TestReencryptionSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a server process many times")
	}
	const n = 20000
	p := &proc{t: t, dir: t.TempDir(), port: freePort(t), rg: "rg-reenc", args: []string{"--disable-local-nodes", "--reencrypt-batch", "5"}}
	p.start()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.kill()
		}
	})
	sub := "/subscriptions/" + p.sub
	p.arm("PUT", sub+"/resourceGroups/"+p.rg, "2021-04-01", `{"location":"westus2"}`, 201)
	acct := sub + "/resourceGroups/" + p.rg + "/providers/Microsoft.Batch/batchAccounts/reenc1"
	p.waitLRO(p.arm("PUT", acct, "2024-07-01", `{"location":"westus2"}`, 200, 202))
	batchURL := p.url("reenc1.batch")
	p.must("POST", batchURL+"/jobs?api-version="+batchAPI, batchScope, `{"id":"job1","displayName":"crash job","poolInfo":{"poolId":"pool1"}}`, 201)
	for i := 0; i < n; i += 100 {
		var tasks []string
		for j := i; j < i+100; j++ {
			tasks = append(tasks, fmt.Sprintf(`{"id":"t%05d","commandLine":"echo reenc-canary-%d","environmentSettings":[{"name":"SECRET","value":"v%d"}]}`, j, j, j))
		}
		p.must("POST", batchURL+"/jobs/job1/addtaskcollection?api-version="+batchAPI, batchScope, `{"value":[`+strings.Join(tasks, ",")+`]}`, 200)
	}
	want := p.listTasks(batchURL)
	if len(want) != n {
		t.Fatalf("%d tasks listed, want %d", len(want), n)
	}

	p.arm("POST", acct+"/reencrypt", "2024-07-01", "", 202)
	rng := rand.New(rand.NewPCG(3, 4))
	var done reencryption
	kills, midway := 0, 0
	var seen []string
	for round := 0; ; round++ {
		if round == 60 {
			t.Fatalf("re-encryption not finished after %d kills: %+v", kills, done)
		}
		time.Sleep(time.Duration(20+rng.IntN(400)) * time.Millisecond)
		p.kill()
		kills++
		p.start()
		var a struct {
			Properties struct {
				Reencryption reencryption `json:"reencryption"`
			} `json:"properties"`
		}
		p.arm("GET", acct, "2024-07-01", "", 200).decode(t, &a)
		done = a.Properties.Reencryption
		seen = append(seen, fmt.Sprintf("%s %d/%d", done.Status, done.RecordsDone, done.RecordsTotal))
		// Reads work whatever the point of the walk.
		for k := 0; k < 5; k++ {
			id := fmt.Sprintf("t%05d", rng.IntN(n))
			got := string(p.must("GET", batchURL+"/jobs/job1/tasks/"+id+"?api-version="+batchAPI, batchScope, "", 200).body)
			if !strings.Contains(got, fmt.Sprintf(`"echo reenc-canary-%d"`, mustAtoi(t, id[1:]))) {
				t.Fatalf("round %d: task %s = %s", round, id, got)
			}
		}
		if done.Status == "Succeeded" {
			break
		}
		if done.Status != "InProgress" {
			t.Fatalf("round %d: re-encryption status %q", round, done.Status)
		}
		if done.RecordsDone > 0 && done.RecordsDone < done.RecordsTotal {
			midway++
		}
	}
	t.Logf("%d kills, %d in the middle of the walk; states seen after each restart: %s", kills, midway, strings.Join(seen, ", "))
	if midway == 0 {
		t.Errorf("no kill came in the middle of the walk: the test did not exercise resuming")
	}
	if done.RecordsDone != done.RecordsTotal || done.RecordsTotal != n+1 {
		t.Errorf("final state %+v, want %d of %d", done, n+1, n+1)
	}
	got := p.listTasks(batchURL)
	for id, w := range want {
		if got[id] != w {
			t.Fatalf("task %s after the re-encryption = %s, want %s", id, got[id], w)
		}
	}
	if len(got) != n {
		t.Fatalf("%d tasks after, want %d", len(got), n)
	}

	// The database: every value carries the new generation; the old DEK is
	// gone from the account row.
	p.kill()
	db, err := sqlstore.Open(context.Background(), filepath.Join(p.dir, "custody.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gens := map[uint32]int{}
	for _, q := range []string{`SELECT spec FROM batch_jobs WHERE account_key = 'reenc1'`, `SELECT spec FROM batch_tasks WHERE account_key = 'reenc1'`} {
		rows, err := db.SQL().Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var v []byte
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			gens[binary.BigEndian.Uint32(v[1:5])]++
		}
		rows.Close()
	}
	if len(gens) != 1 || gens[done.To] != n+1 {
		t.Errorf("sealed values by DEK generation = %v, want all %d of generation %d", gens, n+1, done.To)
	}
	var oldGen int64
	var old string
	if err := db.SQL().QueryRow(`SELECT dek_old_generation, dek_old FROM batch_accounts WHERE name_key = 'reenc1'`).Scan(&oldGen, &old); err != nil {
		t.Fatal(err)
	}
	if oldGen != 0 || old != "" {
		t.Errorf("the account row still holds the old DEK (generation %d)", oldGen)
	}
}

func mustAtoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
		t.Fatal(err)
	}
	return n
}
