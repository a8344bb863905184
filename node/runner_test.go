package node

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests share one runner: its reaper owns every child of the test
// process.
var testRunner = func() *Runner {
	_ = EnableSubreaper()
	return NewRunner()
}()

func run(t *testing.T, cmd string, wall time.Duration) (*Process, string) {
	t.Helper()
	dir := t.TempDir()
	p, err := testRunner.Start(Spec{Key: t.Name(), Dir: dir, CommandLine: cmd, Env: Env(map[string]string{"AZ_BATCH_TASK_ID": "t1", "AZ_BATCH_TASK_WORKING_DIR": filepath.Join(dir, "wd")}, map[string]string{"GREETING": "hello"}), MaxWallClock: wall})
	if err != nil {
		t.Fatal(err)
	}
	return p, dir
}

func waitResult(t *testing.T, p *Process, d time.Duration) Result {
	t.Helper()
	select {
	case <-p.Done():
		return p.Wait()
	case <-time.After(d):
		p.Kill()
		t.Fatalf("process %d did not finish within %s", p.Pid, d)
		return Result{}
	}
}

func TestExitCodesAndFiles(t *testing.T) {
	for _, code := range []int{0, 1, 3, 255} {
		p, dir := run(t, `echo "$GREETING $AZ_BATCH_TASK_ID"; pwd; echo oops >&2; echo data > out.txt; exit `+strconv.Itoa(code), 0)
		res := waitResult(t, p, 10*time.Second)
		if got, want := res.ExitCode, code; got != want {
			t.Errorf("exit code = %d, want %d", got, want)
		}
		if res.Failed() != (code != 0) || res.TimedOut || res.Killed {
			t.Errorf("result %+v for exit %d", res, code)
		}
		out, _ := os.ReadFile(filepath.Join(dir, "stdout.txt"))
		if want := "hello t1\n" + filepath.Join(dir, "wd") + "\n"; string(out) != want {
			t.Errorf("stdout = %q, want %q", out, want)
		}
		errOut, _ := os.ReadFile(filepath.Join(dir, "stderr.txt"))
		if string(errOut) != "oops\n" {
			t.Errorf("stderr = %q", errOut)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "wd", "out.txt")); string(b) != "data\n" {
			t.Errorf("wd/out.txt = %q", b)
		}
	}
}

func TestEnvironmentIsNotInherited(t *testing.T) {
	t.Setenv("CUSTODY_NODE_CREDENTIAL", "secret")
	p, dir := run(t, `env`, 0)
	waitResult(t, p, 10*time.Second)
	out, _ := os.ReadFile(filepath.Join(dir, "stdout.txt"))
	if strings.Contains(string(out), "CUSTODY_NODE_CREDENTIAL") {
		t.Fatalf("the agent's environment leaked into the task:\n%s", out)
	}
	if !strings.Contains(string(out), "GREETING=hello") || !strings.Contains(string(out), "HOME=") {
		t.Fatalf("task environment misses settings:\n%s", out)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// gone reports whether pid has disappeared from /proc entirely (reaped).
func gone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return os.IsNotExist(err)
}

func grandchildren(t *testing.T, dir string) []int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(dir, "wd", "pids"))
		f := strings.Fields(string(b))
		if len(f) == 2 {
			var pids []int
			for _, s := range f {
				n, _ := strconv.Atoi(s)
				pids = append(pids, n)
			}
			return pids
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the task did not write its children's pids")
	return nil
}

const treeCmd = `sleep 300 & a=$!; sh -c 'sleep 300' & b=$!; echo "$a $b" > pids.tmp; mv pids.tmp pids; wait`

func checkTreeGone(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for !gone(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("process %d of the tree is still running", pid)
		} else if !gone(pid) {
			t.Errorf("process %d of the tree is a zombie nobody reaped", pid)
		}
	}
}

func TestKillKillsTheWholeTree(t *testing.T) {
	p, dir := run(t, treeCmd, 0)
	pids := grandchildren(t, dir)
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("grandchild %d not running before the kill", pid)
		}
	}
	p.Kill()
	res := waitResult(t, p, 5*time.Second)
	if !res.Killed || res.ExitCode != 137 {
		t.Errorf("result = %+v, want killed with exit 137", res)
	}
	checkTreeGone(t, append(pids, p.Pid))
}

func TestMaxWallClockKillsTheTree(t *testing.T) {
	start := time.Now()
	p, dir := run(t, treeCmd, 300*time.Millisecond)
	pids := grandchildren(t, dir)
	res := waitResult(t, p, 5*time.Second)
	if el := time.Since(start); el < 300*time.Millisecond || el > 3*time.Second {
		t.Errorf("took %s, want about 300ms", el)
	}
	if !res.TimedOut || res.Killed || !res.Failed() {
		t.Errorf("result = %+v, want timed out", res)
	}
	checkTreeGone(t, pids)
}

func TestOrphansAreReaped(t *testing.T) {
	// The leader exits at once, leaving a background child behind; the
	// runner kills the group and reaps the orphan.
	p, dir := run(t, `sleep 300 & echo "$! $!" > pids; exit 0`, 0)
	res := waitResult(t, p, 5*time.Second)
	if res.ExitCode != 0 {
		t.Fatalf("exit = %d", res.ExitCode)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "wd", "pids"))
	pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
	checkTreeGone(t, []int{pid})
}

func TestStartFailureBadDir(t *testing.T) {
	if _, err := testRunner.Start(Spec{Dir: "/proc/none/x", CommandLine: "true"}); err == nil {
		t.Fatal("start in an impossible directory succeeded")
	}
}
