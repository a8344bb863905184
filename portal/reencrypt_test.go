package portal_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"custody/batch"
	"custody/rm"
	"custody/server"
	"custody/server/servertest"
)

// TestReencryptButton starts a re-encryption from the account page: the
// card then polls itself (htmx, every second) with a progress bar until it
// reports the end, and offers the button again.
func TestReencryptButton(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) {
		c.DisableLocalNodes = true
		c.ReencryptBatch = 5
		c.ReencryptSettle = 200 * time.Millisecond
	})
	ctx := context.Background()
	sub := ts.RM.SubscriptionID
	if _, err := ts.RM.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: sub, Name: "rg", Location: "westus2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Batch.CreateAccount(ctx, &batch.Account{ID: rm.ResourceID(sub, "rg", "Microsoft.Batch", "batchAccounts", "reportal"),
		SubscriptionID: sub, ResourceGroup: "rg", Name: "reportal", Location: "westus2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.BatchData.AddJob(ctx, "reportal", "job1", batch.JobSpec{PoolInfo: batch.PoolInfo{PoolID: "p1"}}); err != nil {
		t.Fatal(err)
	}
	var tasks []batch.NewTask
	for i := 0; i < 300; i++ {
		tasks = append(tasks, batch.NewTask{ID: "t" + strconv.Itoa(i), Spec: batch.TaskSpec{CommandLine: "echo " + strconv.Itoa(i)}})
	}
	for i := 0; i < len(tasks); i += 100 {
		if _, err := ts.BatchData.AddTasks(ctx, "reportal", "job1", tasks[i:i+100]); err != nil {
			t.Fatal(err)
		}
	}
	b := newBrowser(t, ts)
	csrf := b.signIn(ts.Admin.ClientID, ts.Admin.ClientSecret)
	status, page := b.get("/batch/reportal")
	if status != http.StatusOK || !strings.Contains(page, `id="reencrypt"`) || strings.Contains(page, "reencryption-progress") {
		t.Fatalf("account page before: %d, button or progress wrong:\n%s", status, page)
	}
	status, page = b.post("/batch/reportal/reencrypt", url.Values{"csrf": {csrf}})
	if status != http.StatusOK || !strings.Contains(page, "has started") || !strings.Contains(page, `id="reencryption-progress"`) {
		t.Fatalf("after the button: %d\n%s", status, page)
	}
	polling := 0
	for deadline := time.Now().Add(time.Minute); ; {
		status, card := b.get("/batch/reportal/reencryption")
		if status != http.StatusOK || !strings.HasPrefix(strings.TrimSpace(card), `<section class="card" id="reencryption"`) {
			t.Fatalf("card: %d\n%s", status, card)
		}
		if strings.Contains(card, `hx-trigger="every 1s"`) {
			if !strings.Contains(card, "InProgress:") || strings.Contains(card, `id="reencrypt"`) {
				t.Fatalf("card while running:\n%s", card)
			}
			polling++
		} else {
			if !strings.Contains(card, "Succeeded: 301 of 301 records") || !strings.Contains(card, `value="100"`) || !strings.Contains(card, `id="reencrypt"`) {
				t.Fatalf("card after the end:\n%s", card)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running after a minute:\n%s", card)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if polling == 0 {
		t.Error("the card never showed a running re-encryption")
	}
	// A second one may start now; while it runs, the button is gone, and
	// a POST anyway is refused with the API's error.
	b.post("/batch/reportal/reencrypt", url.Values{"csrf": {csrf}})
	if status, page := b.post("/batch/reportal/reencrypt", url.Values{"csrf": {csrf}}); status != http.StatusConflict || !strings.Contains(page, "already being re-encrypted") {
		// Unless the second had finished already: then a third started.
		if a, _ := ts.Batch.Account(ctx, "reportal"); status != http.StatusOK || a.Reencryption.To != 4 {
			t.Errorf("POST while running: %d\n%s", status, page)
		}
	}
}
