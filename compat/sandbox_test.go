package compat_test

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

	"custody/node/sandbox"
	"custody/server"
	"custody/server/servertest"
)

// The task sandbox (issue: tasks are hostile code). A victim account runs a
// task holding secrets (an environment setting, a file, a certificate and
// its password); attacker tasks in another account, and in another pool of
// the victim's account, try every way to the server's and the victim's
// secrets, as non-admin and as admin auto-users. Everything they could
// write out (stdout, stderr, their files) must be free of every secret.

func requireSandbox(t *testing.T) {
	t.Helper()
	if _, err := sandbox.Probe(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the task sandbox cannot be built in CI: %v", err)
		}
		t.Skipf("the task sandbox cannot be built here: %v", err)
	}
}

func canary(t *testing.T, what string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return what + hex.EncodeToString(b)
}

type sandboxEnv struct {
	t       *testing.T
	ts      *servertest.TestServer
	secrets map[string]string // name -> bytes that must never leak
}

func sandboxServer(t *testing.T, diskLimit int64) *sandboxEnv {
	t.Helper()
	requireSandbox(t)
	t.Setenv(agentEnv, "1")
	serverCanary := canary(t, "server-env-")
	t.Setenv("CUSTODY_CANARY", serverCanary)
	ts := servertest.New(t, func(c *server.Config) {
		c.NodeCommand = []string{os.Args[0], "node"}
		c.NodePoll = time.Second
		c.TaskDiskLimit = diskLimit
		if os.Getenv("CUSTODY_TEST_VERBOSE") != "" {
			c.NodeLog = os.Stderr
		}
	})
	e := &sandboxEnv{t: t, ts: ts, secrets: map[string]string{"server environment": serverCanary}}
	// Every file of the data directory is a secret (root key, admin
	// credentials, CA and server keys, the database): take a distinctive
	// piece of each.
	filepath.WalkDir(ts.DataDir(), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil || len(b) < 16 {
			return nil
		}
		piece := string(b)
		if strings.HasSuffix(p, ".pem") {
			// The body of a PEM block, not its public header line.
			lines := strings.Split(piece, "\n")
			if len(lines) > 2 {
				piece = lines[1]
			}
		} else if len(piece) > 64 {
			piece = piece[len(piece)/2 : len(piece)/2+32]
		}
		if strings.HasSuffix(p, "ca.pem") {
			return nil // the CA certificate is public
		}
		e.secrets["data dir "+filepath.Base(p)] = piece
		return nil
	})
	e.secrets["admin client secret"] = ts.Admin.ClientSecret
	return e
}

// leaks returns the names of the secrets that appear in out.
func (e *sandboxEnv) leaks(out string) []string {
	var names []string
	for name, s := range e.secrets {
		if s != "" && strings.Contains(out, s) {
			names = append(names, name)
		}
	}
	return names
}

// check fails if any secret appears in out.
func (e *sandboxEnv) check(what, out string) {
	e.t.Helper()
	for _, name := range e.leaks(out) {
		e.t.Errorf("%s: the %s leaked", what, name)
	}
}

// victim sets up account "victim" with pool "vpool" holding a certificate,
// and a running task holding secrets; it returns the task's directory on
// the host.
func (e *sandboxEnv) victim(ctx context.Context) (*azbatch.Client, string) {
	t := e.t
	mustBatchAccount(t, e.ts, "rg-victim", "victim")
	c := dataClient(t, e.ts, "victim")
	pw := canary(t, "pfx-password-")
	pfx, tp := selfSignedPFX(t, "victim", pw, nil)
	// A piece of the PFX file from its middle (its encrypted key bag), and
	// the password.
	e.secrets["certificate"], e.secrets["certificate password"] = string(pfx[len(pfx)/2:len(pfx)/2+24]), pw
	if _, err := c.CreateCertificate(ctx, azbatch.Certificate{Thumbprint: to.Ptr(tp), ThumbprintAlgorithm: to.Ptr("sha1"),
		Data: to.Ptr(base64.StdEncoding.EncodeToString(pfx)), Format: to.Ptr(azbatch.CertificateFormatPFX), Password: to.Ptr(pw)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("vpool"), VMSize: to.Ptr("standard_a1_v2"), TargetDedicatedNodes: to.Ptr[int32](1),
		CertificateReferences: []azbatch.CertificateReference{{Thumbprint: to.Ptr(tp), ThumbprintAlgorithm: to.Ptr("sha1")}}}, nil); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, c, "vpool", 1, "idle")
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("vjob"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("vpool")}}, nil); err != nil {
		t.Fatal(err)
	}
	envSecret, fileSecret := canary(t, "victim-env-"), canary(t, "victim-file-")
	e.secrets["victim's environment setting"], e.secrets["victim's file"] = envSecret, fileSecret
	if _, err := c.CreateTask(ctx, "vjob", azbatch.CreateTaskContent{ID: to.Ptr("vtask"),
		CommandLine: to.Ptr("sha1sum < $AZ_BATCH_CERTIFICATES_DIR/sha1-" + strings.ToLower(tp) + ".pfx > certsum.txt; " +
			"echo " + fileSecret + " > secret.txt; chmod 644 secret.txt; sleep 600"),
		EnvironmentSettings: []azbatch.EnvironmentSetting{{Name: to.Ptr("VICTIM_SECRET"), Value: to.Ptr(envSecret)}}}, nil); err != nil {
		t.Fatal(err)
	}
	var dir string
	waitFor(t, 20*time.Second, "the victim's task to write its secret", func() (bool, string) {
		m, _ := filepath.Glob(filepath.Join(e.ts.NodeRoot(), "victim", "vpool", "*", "workitems", "vjob", "job-1", "vtask"))
		if len(m) == 1 {
			if b, err := os.ReadFile(filepath.Join(m[0], "wd", "secret.txt")); err == nil && strings.Contains(string(b), fileSecret) {
				dir = m[0]
				// Its own pool's certificate is there for it to read.
				sum, _ := os.ReadFile(filepath.Join(m[0], "wd", "certsum.txt"))
				if want := fmt.Sprintf("%x", sha1.Sum(pfx)); !strings.HasPrefix(string(sum), want) {
					t.Fatalf("the victim's task read its certificate as %q, want sha1 %s", sum, want)
				}
				return true, ""
			}
		}
		return false, fmt.Sprint(m)
	})
	return c, dir
}

// attackScript tries every way out it knows of and prints what it finds.
func (e *sandboxEnv) attackScript(victimDir string) string {
	data := e.ts.DataDir()
	nodes := e.ts.NodeRoot()
	victimNode := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(victimDir))))
	return strings.Join([]string{
		`exec 2>&1; id`,
		// The server's data directory, every file, by name and relative to
		// the node root.
		`ls -la ` + data + `; for f in ` + data + `/* ` + data + `/*/*; do cat "$f"; done`,
		`cat $AZ_BATCH_NODE_ROOT_DIR/../../../../` + filepath.Base(data) + `/*`,
		`echo pwned > ` + data + `/pwned; ls -la ` + data + `/pwned`,
		// Every process's environment and command line.
		`for p in /proc/[0-9]*; do echo "== $p"; cat $p/cmdline; tr '\0' '\n' < $p/environ; done`,
		`cat /proc/1/environ /proc/self/environ | tr '\0' '\n'`,
		// Other nodes' and accounts' files: by absolute path, by relative
		// path, and through links.
		`ls -laR ` + nodes + ` | head -200`,
		`cat ` + victimDir + `/wd/secret.txt ` + victimDir + `/stdout.txt`,
		`cat ` + victimNode + `.certs/* ` + victimNode + `/certs/*`,
		`cat $AZ_BATCH_NODE_ROOT_DIR/../../../victim/*/*/workitems/vjob/job-1/vtask/wd/secret.txt`,
		`ln -s ` + victimDir + ` vlink; cat vlink/wd/secret.txt; ln -s ` + victimNode + `.certs clink; cat clink/*`,
		`ln -s / rootlink; cat rootlink` + data + `/root.key`,
		// Mounts, namespaces and the like (root of the sandbox only).
		`mount -t proc proc /mnt && cat /mnt/*/environ; umount -l /; cat /proc/self/mountinfo`,
		`nsenter -t 1 -m cat ` + data + `/root.key; chroot / cat ` + data + `/root.key`,
		`grep -r -l . /tmp /dev/shm 2>/dev/null | head`,
		`true`,
	}, "\n")
}

// attack runs the script in account/pool as the given user and checks what
// it could write out.
func (e *sandboxEnv) attack(ctx context.Context, c *azbatch.Client, pool, id string, user *azbatch.UserIdentity, script string) string {
	t := e.t
	if _, err := c.CreateTask(ctx, pool+"job", azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr("sh -c '" + strings.ReplaceAll(script, "'", `'"'"'`) + "'"),
		UserIdentity: user}, nil); err != nil {
		t.Fatal(err)
	}
	tk := waitTask(t, c, pool+"job", id, 60*time.Second)
	out := readTaskFile(t, c, pool+"job", id, "stdout.txt") + readTaskFile(t, c, pool+"job", id, "stderr.txt")
	e.check(id, out)
	if _, err := os.Stat(filepath.Join(e.ts.DataDir(), "pwned")); err == nil {
		t.Errorf("%s wrote into the data directory", id)
	}
	_ = tk
	return out
}

func (e *sandboxEnv) pool(ctx context.Context, c *azbatch.Client, id, vmSize string) {
	t := e.t
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr(id), VMSize: to.Ptr(vmSize), TargetDedicatedNodes: to.Ptr[int32](1)}, nil); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, c, id, 1, "idle")
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr(id + "job"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr(id)}}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestSandboxKeepsSecrets: tasks of another account and of another pool of
// the same account, non-admin and admin, reach no secret of the server or
// of the victim.
func TestSandboxKeepsSecrets(t *testing.T) {
	e := sandboxServer(t, 0)
	ctx := context.Background()
	vc, victimDir := e.victim(ctx)
	script := e.attackScript(victimDir)

	mustBatchAccount(t, e.ts, "rg-attacker", "attacker")
	ac := dataClient(t, e.ts, "attacker")
	e.pool(ctx, ac, "apool", "standard_a1_v2")
	e.pool(ctx, vc, "vpool2", "standard_a1_v2")
	admin := &azbatch.UserIdentity{AutoUser: &azbatch.AutoUserSpecification{Scope: to.Ptr(azbatch.AutoUserScopeTask), ElevationLevel: to.Ptr(azbatch.ElevationLevelAdmin)}}
	for _, tc := range []struct {
		c    *azbatch.Client
		pool string
		id   string
		user *azbatch.UserIdentity
	}{
		{ac, "apool", "other-account", nil},
		{ac, "apool", "other-account-admin", admin},
		{vc, "vpool2", "other-pool", nil},
		{vc, "vpool2", "other-pool-admin", admin},
	} {
		out := e.attack(ctx, tc.c, tc.pool, tc.id, tc.user, script)
		// It did run, and as whom it should.
		if testing.Verbose() {
			t.Logf("%s:\n%s", tc.id, out)
		}
		wantRoot := tc.user != nil
		if gotRoot := strings.Contains(out, "uid=0("); gotRoot != wantRoot {
			t.Errorf("%s: root in its sandbox = %v, want %v: %.300s", tc.id, gotRoot, wantRoot, out)
		}
	}
	// Control: what a task prints does reach the check, so a leak would
	// be seen.
	control := canary(t, "control-")
	e.secrets["control"] = control
	if _, err := ac.CreateTask(ctx, "apooljob", azbatch.CreateTaskContent{ID: to.Ptr("control"), CommandLine: to.Ptr("echo $CONTROL"),
		EnvironmentSettings: []azbatch.EnvironmentSetting{{Name: to.Ptr("CONTROL"), Value: to.Ptr(control)}}}, nil); err != nil {
		t.Fatal(err)
	}
	waitTask(t, ac, "apooljob", "control", 30*time.Second)
	if got := e.leaks(readTaskFile(t, ac, "apooljob", "control", "stdout.txt")); len(got) != 1 || got[0] != "control" {
		t.Errorf("the control task's output shows leaks %v, want [control]", got)
	}
	// The victim's task still runs, undisturbed.
	if tk := taskState(t, vc, "vjob", "vtask"); *tk.State != azbatch.TaskStateRunning {
		t.Errorf("the victim's task is %s", *tk.State)
	}
}

// TestSandboxLimits: a task leaves no process behind (setsid, double fork),
// cannot fork without limit, allocate past its vmSize's memory or write past
// its disk budget; each ends as a failure with Azure's failure information.
func TestSandboxLimits(t *testing.T) {
	const diskLimit = 8 << 20
	e := sandboxServer(t, diskLimit)
	ctx := context.Background()
	mustBatchAccount(t, e.ts, "rg-limits", "limits")
	c := dataClient(t, e.ts, "limits")
	e.pool(ctx, c, "small", "standard_a1_v2") // 1 CPU, 2 GiB, 1024 processes
	run := func(id, cmd string, env ...string) azbatch.Task {
		t.Helper()
		var settings []azbatch.EnvironmentSetting
		for i := 0; i+1 < len(env); i += 2 {
			settings = append(settings, azbatch.EnvironmentSetting{Name: to.Ptr(env[i]), Value: to.Ptr(env[i+1])})
		}
		if _, err := c.CreateTask(ctx, "smalljob", azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr(cmd), EnvironmentSettings: settings}, nil); err != nil {
			t.Fatal(err)
		}
		return waitTask(t, c, "smalljob", id, 60*time.Second)
	}

	t.Run("no process outlives its task", func(t *testing.T) {
		mark := canary(t, "leftover-")
		tk := run("leftover", `setsid sleep 300 & (sleep 301 &) ; sh -c 'sleep 302 & exit' ; sleep 0.5; echo started`, "LEFTOVER", mark)
		if *tk.ExecutionInfo.ExitCode != 0 || readTaskFile(t, c, "smalljob", "leftover", "stdout.txt") != "started\n" {
			t.Fatalf("the task did not run: %+v", tk.ExecutionInfo)
		}
		waitFor(t, 5*time.Second, "the task's background processes to be gone", func() (bool, string) {
			p := procsWithEnv("LEFTOVER=" + mark)
			return len(p) == 0, fmt.Sprint(p)
		})
	})

	t.Run("fork without limit", func(t *testing.T) {
		mark := canary(t, "forks-")
		most := 0
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				most = max(most, len(procsWithEnv("FORKS="+mark)))
			}
		}()
		tk := run("forks", `i=0; while [ $i -lt 3000 ]; do sleep 30 & i=$((i+1)); done; echo all 3000 started`, "FORKS", mark)
		close(stop)
		<-done
		out := readTaskFile(t, c, "smalljob", "forks", "stdout.txt") + readTaskFile(t, c, "smalljob", "forks", "stderr.txt")
		if strings.Contains(out, "all 3000 started") || *tk.ExecutionInfo.Result != azbatch.TaskExecutionResultFailure {
			t.Errorf("a task forked 3000 processes on a node limited to 1024: %s %.200s", execInfo(tk), out)
		}
		if most > 1024 {
			t.Errorf("the host saw %d processes of the task, more than its limit of 1024", most)
		}
		if p := procsWithEnv("FORKS=" + mark); len(p) > 0 {
			t.Errorf("%d processes of the task outlived it", len(p))
		}
	})

	t.Run("memory past the budget", func(t *testing.T) {
		tk := run("memory", `dd if=/dev/zero of=/dev/null bs=3G count=1 && echo allocated`)
		fi := tk.ExecutionInfo.FailureInfo
		if *tk.ExecutionInfo.Result != azbatch.TaskExecutionResultFailure || fi == nil || *fi.Code != "TaskOutOfMemory" {
			t.Errorf("a task that allocates 3 GiB on a 2 GiB node: %s", execInfo(tk))
		}
		if out := readTaskFile(t, c, "smalljob", "memory", "stdout.txt"); strings.Contains(out, "allocated") {
			t.Errorf("the allocation succeeded: %q", out)
		}
	})

	t.Run("disk past the budget", func(t *testing.T) {
		for _, tc := range []struct{ id, cmd string }{
			{"onefile", `head -c 100000000 /dev/zero > big; echo wrote; sleep 5`},
			{"manyfiles", `i=0; while [ $i -lt 100 ]; do head -c 1000000 /dev/zero > f$i; i=$((i+1)); sleep 0.02; done; echo wrote; sleep 5`},
			{"stdout", `head -c 100000000 /dev/zero; sleep 5`},
		} {
			tk := run(tc.id, tc.cmd)
			fi := tk.ExecutionInfo.FailureInfo
			if *tk.ExecutionInfo.Result != azbatch.TaskExecutionResultFailure || fi == nil || *fi.Code != "DiskFull" {
				t.Errorf("%s: a task that writes 100 MB with a budget of 8 MiB: %s", tc.id, execInfo(tk))
			}
			m, _ := filepath.Glob(filepath.Join(e.ts.NodeRoot(), "limits", "small", "*", "workitems", "smalljob", "job-1", tc.id))
			if len(m) == 1 {
				if used := dirSize(m[0]); used > 4*diskLimit {
					t.Errorf("%s: the task's files hold %d bytes, far past its budget of %d", tc.id, used, diskLimit)
				}
			}
		}
	})

	// The node's agent lived through all of it: the same node runs the next
	// task.
	if tk := run("after", "echo alive"); *tk.ExecutionInfo.ExitCode != 0 || readTaskFile(t, c, "smalljob", "after", "stdout.txt") != "alive\n" {
		t.Errorf("after the limit tests the node does not run tasks: %s", execInfo(tk))
	}
	if st := nodeStates(t, c, "small"); len(st) != 1 {
		t.Errorf("the pool's node was replaced: %v", st)
	}
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// execInfo formats a task's outcome for failure messages.
func execInfo(tk azbatch.Task) string {
	ei := tk.ExecutionInfo
	if ei == nil {
		return "no executionInfo"
	}
	s := ""
	if ei.ExitCode != nil {
		s += fmt.Sprintf("exit code %d", *ei.ExitCode)
	}
	if ei.Result != nil {
		s += fmt.Sprintf(", result %s", *ei.Result)
	}
	if fi := ei.FailureInfo; fi != nil && fi.Code != nil {
		s += ", failure " + *fi.Code
		if fi.Message != nil {
			s += ": " + *fi.Message
		}
	}
	return s
}

// TestSandboxUsers: userIdentity picks the task's user as Azure does: the
// pool's auto-user by default, a user of the task's own for scope task, the
// pool's named user accounts, root of the sandbox for admin; start tasks
// likewise.
func TestSandboxUsers(t *testing.T) {
	e := sandboxServer(t, 0)
	ctx := context.Background()
	mustBatchAccount(t, e.ts, "rg-users", "users")
	c := dataClient(t, e.ts, "users")
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("p"), VMSize: to.Ptr("standard_a1_v2"), TargetDedicatedNodes: to.Ptr[int32](1),
		UserAccounts: []azbatch.UserAccount{
			{Name: to.Ptr("alice"), Password: to.Ptr("alice-password-1"), ElevationLevel: to.Ptr(azbatch.ElevationLevelNonAdmin)},
			{Name: to.Ptr("boss"), Password: to.Ptr("boss-password-1"), ElevationLevel: to.Ptr(azbatch.ElevationLevelAdmin)},
		},
		StartTask: &azbatch.StartTask{CommandLine: to.Ptr("id -u > $AZ_BATCH_NODE_SHARED_DIR/start-uid"), WaitForSuccess: to.Ptr(true),
			UserIdentity: &azbatch.UserIdentity{AutoUser: &azbatch.AutoUserSpecification{ElevationLevel: to.Ptr(azbatch.ElevationLevelAdmin)}}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, c, "p", 1, "idle")
	pool, err := c.GetPool(ctx, "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range pool.UserAccounts {
		if u.Password != nil {
			t.Errorf("the pool shows the password of user %s", *u.Name)
		}
	}
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p")}}, nil); err != nil {
		t.Fatal(err)
	}
	auto := func(scope azbatch.AutoUserScope, level azbatch.ElevationLevel) *azbatch.UserIdentity {
		return &azbatch.UserIdentity{AutoUser: &azbatch.AutoUserSpecification{Scope: to.Ptr(scope), ElevationLevel: to.Ptr(level)}}
	}
	uid := map[string]string{}
	for _, tc := range []struct {
		id   string
		user *azbatch.UserIdentity
	}{
		{"default", nil},
		{"pool", auto(azbatch.AutoUserScopePool, azbatch.ElevationLevelNonAdmin)},
		{"task1", auto(azbatch.AutoUserScopeTask, azbatch.ElevationLevelNonAdmin)},
		{"task2", auto(azbatch.AutoUserScopeTask, azbatch.ElevationLevelNonAdmin)},
		{"admin", auto(azbatch.AutoUserScopePool, azbatch.ElevationLevelAdmin)},
		{"alice", &azbatch.UserIdentity{Username: to.Ptr("alice")}},
		{"boss", &azbatch.UserIdentity{Username: to.Ptr("boss")}},
		{"start", nil},
	} {
		cmd := "id -u"
		if tc.id == "start" {
			cmd = "cat $AZ_BATCH_NODE_SHARED_DIR/start-uid"
		}
		if _, err := c.CreateTask(ctx, "j", azbatch.CreateTaskContent{ID: to.Ptr(tc.id), CommandLine: to.Ptr(cmd), UserIdentity: tc.user}, nil); err != nil {
			t.Fatal(err)
		}
		tk := waitTask(t, c, "j", tc.id, 30*time.Second)
		if *tk.ExecutionInfo.ExitCode != 0 {
			t.Fatalf("task %s: %s: %s", tc.id, execInfo(tk), readTaskFile(t, c, "j", tc.id, "stderr.txt"))
		}
		uid[tc.id] = strings.TrimSpace(readTaskFile(t, c, "j", tc.id, "stdout.txt"))
	}
	for _, id := range []string{"admin", "boss", "start"} {
		if uid[id] != "0" {
			t.Errorf("task %s runs as %s, want root of its sandbox", id, uid[id])
		}
	}
	if uid["default"] == "0" || uid["default"] != uid["pool"] {
		t.Errorf("the default user %s is not the pool's non-admin auto-user %s", uid["default"], uid["pool"])
	}
	distinct := map[string]string{}
	for _, id := range []string{"default", "task1", "task2", "alice"} {
		if other, dup := distinct[uid[id]]; dup || uid[id] == "0" || uid[id] == "" {
			t.Errorf("tasks %s and %s share user %s", id, other, uid[id])
		}
		distinct[uid[id]] = id
	}
	// A user name the pool does not have fails the task, clearly.
	if _, err := c.CreateTask(ctx, "j", azbatch.CreateTaskContent{ID: to.Ptr("nobody"), CommandLine: to.Ptr("true"),
		UserIdentity: &azbatch.UserIdentity{Username: to.Ptr("mallory")}}, nil); err != nil {
		t.Fatal(err)
	}
	tk := waitTask(t, c, "j", "nobody", 30*time.Second)
	if fi := tk.ExecutionInfo.FailureInfo; fi == nil || fi.Message == nil || !strings.Contains(*fi.Message, "mallory") {
		t.Errorf("a task as an unknown user: %s", execInfo(tk))
	}
}

// TestUnsafeNodesSaySo: a server whose local nodes run unsandboxed says so
// in /healthz; a node root inside the data directory is refused.
func TestUnsafeNodesSaySo(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.UnsafeSharedHostNodes = true })
	resp, err := ts.Client.Get("https://management." + ts.Endpoint.Domain + ":" + fmt.Sprint(ts.Endpoint.Port) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		Status   string   `json:"status"`
		Warnings []string `json:"warnings"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || len(h.Warnings) != 1 || !strings.Contains(h.Warnings[0], "WITHOUT a sandbox") {
		t.Errorf("/healthz of a server with unsandboxed local nodes = %+v", h)
	}

	dir := t.TempDir()
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.DataDir, cfg.NodeRoot = "127.0.0.1:0", dir, filepath.Join(dir, "nodes")
	if s, err := server.Open(context.Background(), cfg); err == nil {
		s.Close()
		t.Fatal("a node root inside the data directory was accepted")
	} else if !strings.Contains(err.Error(), "must not contain one another") {
		t.Errorf("node root inside the data directory: %v", err)
	}
}
