package compat_test

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
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
