package compat_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

	"custody/node"
	"custody/server"
	"custody/server/servertest"
)

// TestComputeFilesStayInTheirDirectory: links a task makes to /etc, to
// another directory of the host, to the certificates directory or to
// another task's directory are never followed by the task and node file
// APIs (reads and deletes answer 403 FileAccessDenied, listings show the
// links as files), and certificate files are never served.
func TestComputeFilesStayInTheirDirectory(t *testing.T) {
	ts := computeServer(t)
	mustBatchAccount(t, ts, "rg-files", "computefiles")
	c := dataClient(t, ts, "computefiles")
	ctx := context.Background()
	outside := t.TempDir()
	for name, body := range map[string]string{"secret": "host secret", "victim": "keep me"} {
		if err := os.WriteFile(filepath.Join(outside, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	der, tp := selfSignedCert(t, "files-cert")
	if _, err := c.CreateCertificate(ctx, azbatch.Certificate{Thumbprint: to.Ptr(tp), ThumbprintAlgorithm: to.Ptr("sha1"),
		Data: to.Ptr(base64.StdEncoding.EncodeToString(der)), Format: to.Ptr(azbatch.CertificateFormatCER)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p1"), VMSize: to.Ptr("standard_a1_v2"), TargetDedicatedNodes: to.Ptr[int32](1),
		CertificateReferences: []azbatch.CertificateReference{{Thumbprint: to.Ptr(tp), ThumbprintAlgorithm: to.Ptr("sha1")}}}, nil); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, c, "p1", 1, "idle")
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	var task string
	waitFor(t, 20*time.Second, "a task that sees the certificate", func() (bool, string) {
		task = "t" + strconv.FormatInt(time.Now().UnixNano(), 36)
		cmd := "test -f $AZ_BATCH_CERTIFICATES_DIR/sha1-" + tp + ".cer && ln -s /etc etcdir && ln -s " + outside + " outdir && " +
			"ln -s $AZ_BATCH_CERTIFICATES_DIR certdir && ln -s ../../other sibling && echo mine > mine.txt"
		if _, err := c.CreateTask(ctx, "j1", azbatch.CreateTaskContent{ID: to.Ptr(task), CommandLine: to.Ptr(cmd)}, nil); err != nil {
			t.Fatal(err)
		}
		tk := waitTask(t, c, "j1", task, 10*time.Second)
		return tk.ExecutionInfo != nil && tk.ExecutionInfo.ExitCode != nil && *tk.ExecutionInfo.ExitCode == 0, "the task failed"
	})
	if got := readTaskFile(t, c, "j1", task, "wd/mine.txt"); got != "mine\n" {
		t.Errorf("wd/mine.txt = %q", got)
	}
	for _, p := range []string{"wd/etcdir/passwd", "wd/outdir/secret", "wd/certdir/sha1-" + tp + ".cer", "wd/sibling/" + task + "/wd/mine.txt"} {
		r, err := c.GetTaskFile(ctx, "j1", task, p, nil)
		if err == nil {
			r.Body.Close()
		}
		wantResponseError(t, err, 403, "FileAccessDenied")
	}
	_, err := c.DeleteTaskFile(ctx, "j1", task, "wd/outdir/victim", nil)
	wantResponseError(t, err, 403, "FileAccessDenied")
	if b, err := os.ReadFile(filepath.Join(outside, "victim")); err != nil || string(b) != "keep me" {
		t.Errorf("a file outside the node root was deleted or changed through a link: %q %v", b, err)
	}
	files := map[string]bool{}
	fp := c.NewListTaskFilesPager("j1", task, &azbatch.ListTaskFilesOptions{Recursive: to.Ptr(true)})
	for fp.More() {
		page, err := fp.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range page.Value {
			files[*f.Name] = *f.IsDirectory
		}
	}
	for _, link := range []string{"wd/etcdir", "wd/outdir", "wd/certdir", "wd/sibling"} {
		if isDir, ok := files[link]; !ok || isDir {
			t.Errorf("task files = %v: want %s listed as a file", files, link)
		}
	}
	for name := range files {
		if strings.HasPrefix(name, "wd/etcdir/") || strings.HasPrefix(name, "wd/outdir/") || strings.HasPrefix(name, "wd/certdir/") {
			t.Errorf("the recursive listing followed a link: %s", name)
		}
	}

	// Node files: the certificates are neither served nor listed.
	nodeID := ""
	np := c.NewListNodesPager("p1", nil)
	for np.More() {
		page, err := np.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range page.Value {
			nodeID = *n.ID
		}
	}
	for _, p := range []string{"certs/sha1-" + tp + ".cer", "workitems/j1/job-1/" + task + "/wd/certdir/sha1-" + tp + ".cer", "workitems/j1/job-1/" + task + "/wd/etcdir/passwd"} {
		r, err := c.GetNodeFile(ctx, "p1", nodeID, p, nil)
		if err == nil {
			r.Body.Close()
		}
		wantResponseError(t, err, 403, "FileAccessDenied")
	}
	nfp := c.NewListNodeFilesPager("p1", nodeID, &azbatch.ListNodeFilesOptions{Recursive: to.Ptr(true)})
	for nfp.More() {
		page, err := nfp.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range page.Value {
			if strings.HasSuffix(*f.Name, ".cer") || strings.HasPrefix(*f.Name, "certs") {
				t.Errorf("the node listing shows certificate material: %s", *f.Name)
			}
		}
	}
}

// TestComputeNodeFilesNeverFetchURLs: whoever holds a node credential may
// name any filesUrl at join, yet reading a node file never makes the server
// connect anywhere: the request reaches the agent over the node channel
// (in a sync answer), and only a reply posted with the same node's
// credential, for that request's id, is returned.
func TestComputeNodeFilesNeverFetchURLs(t *testing.T) {
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "internal secret")
	}))
	defer target.Close()

	ts := servertest.New(t, func(c *server.Config) {
		c.DisableLocalNodes, c.NodePoll = true, time.Second
		c.ReadTimeout = time.Second // a reply runs as long as the client reads it
	})
	mustBatchAccount(t, ts, "rg-nodefiles", "computenodefiles")
	c := dataClient(t, ts, "computenodefiles")
	ctx := context.Background()
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p1"), VMSize: to.Ptr("standard_d2s_v3"), TargetDedicatedNodes: to.Ptr[int32](2)}, nil); err != nil {
		t.Fatal(err)
	}
	tok := batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	credential := func() (id, cred string) {
		r := batchRaw(t, ts, tok, "POST", "computenodefiles", "/pools/p1/nodecredentials?api-version="+dataAPIVersion, "")
		var nc struct{ NodeID, Credential string }
		if err := json.Unmarshal(r.Body, &nc); r.Status != 201 || err != nil {
			t.Fatalf("node credential: %d %s", r.Status, r.Body)
		}
		return nc.NodeID, nc.Credential
	}
	nodeID, cred := credential()
	_, otherCred := credential()
	channel := func(cred, path string, body io.Reader, header map[string]string) response {
		t.Helper()
		req, err := http.NewRequest("POST", ts.URL("batch")+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", node.CredentialScheme+" "+cred)
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		return MustSend(t, ts, req)
	}
	for _, cr := range []string{cred, otherCred} {
		if r := channel(cr, "/node/v1/join", strings.NewReader(`{"filesUrl":"`+target.URL+`","filesToken":"x","agentVersion":"1.0.0"}`), nil); r.Status != 200 {
			t.Fatalf("join: %d %s", r.Status, r.Body)
		}
	}

	type result struct {
		status int
		body   string
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", ts.URL("computenodefiles.batch")+"/pools/p1/nodes/"+nodeID+"/files/startup%2Fstdout.txt?api-version="+dataAPIVersion, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := ts.Client.Do(req)
		if err != nil {
			got <- result{0, err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- result{resp.StatusCode, string(b)}
	}()

	var fr node.FileRequest
	waitFor(t, 10*time.Second, "the file request in a sync answer", func() (bool, string) {
		r := channel(cred, "/node/v1/sync", strings.NewReader(`{"running":[],"haveConfig":0}`), nil)
		var sr node.SyncResponse
		if err := json.Unmarshal(r.Body, &sr); r.Status != 200 || err != nil {
			t.Fatalf("sync: %d %s", r.Status, r.Body)
		}
		if len(sr.Files) > 0 {
			fr = sr.Files[0]
		}
		return fr.ID != "", string(r.Body)
	})
	if fr.Method != "GET" || fr.Path != "startup/stdout.txt" || fr.Dir != "" {
		t.Errorf("file request = %+v", fr)
	}
	reply := func(id string) string {
		b, _ := json.Marshal(node.FileReply{ID: id, Status: 200, ContentLength: 5, Mode: "0644", LastModified: time.Now().UTC().Format(http.TimeFormat)})
		return string(b)
	}
	// Another node's credential, or an id the server never issued, is refused.
	if r := channel(otherCred, "/node/v1/files", strings.NewReader("hijacked"), map[string]string{node.FileReplyHeader: reply(fr.ID)}); r.Status != 404 {
		t.Errorf("reply with another node's credential: %d %s", r.Status, r.Body)
	}
	if r := channel(cred, "/node/v1/files", strings.NewReader("made up"), map[string]string{node.FileReplyHeader: reply("0123456789abcdef")}); r.Status != 404 {
		t.Errorf("reply for an unknown request: %d %s", r.Status, r.Body)
	}
	// The reply comes slowly (past the server's read timeout), and says
	// more than it declared.
	pr, pw := io.Pipe()
	go func() {
		io.WriteString(pw, "hel")
		time.Sleep(1500 * time.Millisecond)
		io.WriteString(pw, "lo and more than declared")
		pw.Close()
	}()
	if r := channel(cred, "/node/v1/files", pr, map[string]string{node.FileReplyHeader: reply(fr.ID)}); r.Status != 204 {
		t.Errorf("reply: %d %s", r.Status, r.Body)
	}
	select {
	case res := <-got:
		if res.status != 200 || res.body != "hello" {
			t.Errorf("node file = %d %q, want 200 %q", res.status, res.body, "hello")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the node file request did not end")
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server connected to the filesUrl a node named (%d requests)", n)
	}
}
