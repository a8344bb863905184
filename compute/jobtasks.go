package compute

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"custody"
	"custody/batch"
	"custody/node"
)

// Job manager, preparation and release tasks, and what a task's completion
// does to its job (exit conditions, killJobOnCompletion,
// onAllTasksComplete).
//
// A job's preparation task runs on a node before the first task of the job
// placed there. The task waits on the node in state preparing until the
// preparation task succeeded (waitForSuccess, the default), then runs; if
// the preparation task fails (after its retries) the waiting tasks go back
// to active and the job's tasks are kept off that node. Without
// waitForSuccess the task starts at once. When the job is terminated,
// completes or is deleted, its release task runs on every node that ran the
// preparation task, once the job's runs there have ended. The executions
// live with the node, in memory, like the rest of a node's state.

// Run kinds of job preparation and release tasks on the node channel.
const (
	kindJobPrep    = node.KindJobPreparation
	kindJobRelease = node.KindJobRelease
)

// JobTaskExecution is how a job preparation or release task ran on a node
// (Azure's jobPreparationTaskExecutionInfo / jobReleaseTaskExecutionInfo).
type JobTaskExecution struct {
	// State is running or completed.
	State     string
	StartTime time.Time
	EndTime   *time.Time
	ExitCode  *int
	// Result is success or failure once completed.
	Result         string
	FailureCode    string
	FailureMessage string
	RetryCount     int
	LastRetryTime  *time.Time
	// TaskRootDirectory is the task's directory relative to the node root.
	TaskRootDirectory string
}

// JobTaskStatus is a job's preparation and release task on one node.
type JobTaskStatus struct {
	PoolID, NodeID string
	Preparation    JobTaskExecution
	// Release is nil until the release task started on the node.
	Release *JobTaskExecution
}

// nodeJob is a job as one node knows it: its preparation task's settings
// and executions. Caller holds s.mu for every access.
type nodeJob struct {
	jobID string
	// hasPrep is false when the job has no preparation task: nothing to
	// wait for.
	hasPrep    bool
	prepID     string
	wait       bool
	rerun      bool
	maxRetries int
	prep       *JobTaskExecution
	// stale asks for the preparation task to run again before the next
	// task of the job (the node rebooted, or dropped its files).
	stale   bool
	release *JobTaskExecution
	// releaseRun is the release task waiting for the job's runs on the node
	// to end.
	releaseRun *node.Run
	// deleted: the job is gone; forget it once its release task ran.
	deleted bool
}

func (n *liveNode) job(jobID string) *nodeJob {
	return n.jobs[strings.ToLower(jobID)]
}

// prepFailed reports whether the job's tasks are kept off the node.
func (nj *nodeJob) prepFailed() bool {
	return nj != nil && nj.hasPrep && nj.wait && !nj.stale && nj.prep != nil && nj.prep.State == "completed" && nj.prep.Result == batch.TaskFailure
}

// prepPending reports whether a task placed on the node must wait.
func (nj *nodeJob) prepPending() bool {
	return nj.hasPrep && nj.wait && nj.prep != nil && nj.prep.State == "running"
}

// excludedNodes returns, per lower-cased job id, the nodes of a pool where
// the job's preparation task failed. Caller holds s.mu.
func (s *Service) excludedNodes(account, poolID string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, n := range s.poolNodes(account, poolID) {
		for key, nj := range n.jobs {
			if nj.prepFailed() {
				if out[key] == nil {
					out[key] = map[string]bool{}
				}
				out[key][n.ID] = true
			}
		}
	}
	return out
}

// prepareJob makes sure a node knows the job: the first time (or after a
// reboot) it asks for the job's preparation task and queues it. It returns
// the node's entry, or nil if the node cannot take the job's tasks now.
func (s *Service) prepareJob(ctx context.Context, account string, n *liveNode, jobID string) *nodeJob {
	s.mu.Lock()
	nj := n.job(jobID)
	s.mu.Unlock()
	if nj != nil && !nj.stale {
		return nj
	}
	jr, ok, err := s.cfg.Tasks.JobPreparation(ctx, account, jobID)
	if err != nil {
		s.log.Warn("compute: job preparation task", "job", jobID, "err", err)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodes[n.ID] != n || !n.usable() {
		return nil
	}
	if nj = n.job(jobID); nj != nil && !nj.stale {
		return nj // another pass got here first
	}
	if nj == nil {
		nj = &nodeJob{jobID: jobID}
		if n.jobs == nil {
			n.jobs = map[string]*nodeJob{}
		}
		n.jobs[strings.ToLower(jobID)] = nj
	}
	nj.stale, nj.hasPrep = false, ok
	if ok {
		nj.prepID, nj.wait, nj.rerun, nj.maxRetries = jr.TaskID, jr.WaitForSuccess, jr.RerunAfterReboot, jr.MaxRetries
		nj.prep = &JobTaskExecution{TaskRootDirectory: TaskDir(jobID, jr.TaskID)}
		s.queueJobTask(n, nj, kindJobPrep, jr)
	}
	return nj
}

// queueJobTask queues a preparation or release run on a node. Caller holds
// s.mu.
func (s *Service) queueJobTask(n *liveNode, nj *nodeJob, kind string, jr JobTaskRun) {
	n.seq++
	r := &node.Run{RunID: kind + "/" + nj.jobID + "/" + itoa(n.seq), Kind: kind, JobID: nj.jobID, TaskID: jr.TaskID,
		CommandLine: jr.CommandLine, Env: jr.Env, MaxWallClockMillis: jr.MaxWallClock.Milliseconds(), UserIdentity: jr.UserIdentity}
	if kind == kindJobRelease {
		nj.releaseRun = r
		return
	}
	n.runs[r.RunID] = &run{id: r.RunID, kind: kind, jobID: nj.jobID, taskID: jr.TaskID, spec: r, maxRetr: jr.MaxRetries}
	n.outbox = append(n.outbox, *r)
	e := nj.prep
	e.State, e.StartTime, e.EndTime, e.ExitCode, e.Result, e.FailureCode, e.FailureMessage = "running", s.now(), nil, nil, "", "", ""
	s.wakeNode(n)
}

// dispatchReleases sends a node the release tasks whose jobs have no runs
// left on it. Caller holds s.mu.
func (s *Service) dispatchReleases(n *liveNode) {
	if !n.joined || n.drop || n.leave {
		return // when it can run them again
	}
	for key, nj := range n.jobs {
		if nj.releaseRun == nil {
			continue
		}
		busy := false
		for _, r := range n.runs {
			if r.kind != kindJobRelease && strings.ToLower(r.jobID) == key {
				busy = true
				break
			}
		}
		if busy {
			continue
		}
		r := nj.releaseRun
		nj.releaseRun = nil
		n.runs[r.RunID] = &run{id: r.RunID, kind: kindJobRelease, jobID: r.JobID, taskID: r.TaskID, spec: r}
		n.outbox = append(n.outbox, *r)
		nj.release = &JobTaskExecution{State: "running", StartTime: s.now(), TaskRootDirectory: TaskDir(r.JobID, r.TaskID)}
		s.wakeNode(n)
	}
}

// jobTaskFollowUp is what is left to do, outside s.mu, after a preparation
// task's run ended.
type jobTaskFollowUp struct {
	nodeID, jobID string
	retry         bool // run it again (a retry)
	settle        bool // release or requeue the tasks waiting for it
	released      bool // a release task ended: the job may be done
}

// jobTaskDone records the end of a preparation or release run. Caller
// holds s.mu.
func (s *Service) jobTaskDone(n *liveNode, r *run, rep node.RunReport) jobTaskFollowUp {
	nj := n.job(r.jobID)
	if nj == nil {
		return jobTaskFollowUp{}
	}
	e := nj.prep
	if r.kind == kindJobRelease {
		e = nj.release
	}
	if e == nil {
		return jobTaskFollowUp{}
	}
	now := s.now()
	code, end := rep.ExitCode, rep.EndTime
	if !rep.StartTime.IsZero() {
		e.StartTime = rep.StartTime
	}
	e.EndTime, e.ExitCode = &end, &code
	failed := rep.Failed() || r.killed
	if r.kind == kindJobPrep && failed && !r.killed && rep.StartError == "" && (r.maxRetr < 0 || e.RetryCount < r.maxRetr) {
		e.RetryCount++
		e.LastRetryTime = &now
		return jobTaskFollowUp{nodeID: n.ID, jobID: r.jobID, retry: true}
	}
	e.State, e.Result = "completed", batch.TaskSuccess
	if failed {
		e.Result = batch.TaskFailure
		e.FailureCode, e.FailureMessage = runFailure(rep, r.killed)
	}
	if r.kind == kindJobRelease {
		if nj.deleted {
			delete(n.jobs, strings.ToLower(r.jobID))
		}
		return jobTaskFollowUp{nodeID: n.ID, jobID: r.jobID, released: true}
	}
	return jobTaskFollowUp{nodeID: n.ID, jobID: r.jobID, settle: true}
}

// runFailure is Azure's failure code and message for a run that failed.
func runFailure(rep node.RunReport, killed bool) (string, string) {
	switch {
	case killed:
		return "TaskEnded", "The task was terminated."
	case rep.TimedOut:
		return "MaxWallClockTimeExceeded", "The task ran longer than its maxWallClockTime and was killed."
	case rep.DiskExceeded:
		return "DiskFull", "The task's files (working directory, stdout.txt and stderr.txt) outgrew the disk budget of the pool's vmSize and the task was killed."
	case rep.OOMKilled:
		return "TaskOutOfMemory", fmt.Sprintf("A process of the task was killed for exceeding the memory of the pool's vmSize (exit code %d).", rep.ExitCode)
	case rep.StartError != "":
		return batch.FailureCommandProgramNotFound, "The task could not be started: " + rep.StartError
	default:
		return "FailureExitCode", fmt.Sprintf("The task exited with exit code %d.", rep.ExitCode)
	}
}

// followUp runs what jobTaskDone left to do.
func (s *Service) followUp(ctx context.Context, account string, f jobTaskFollowUp) {
	switch {
	case f.retry:
		jr, ok, err := s.cfg.Tasks.JobPreparation(ctx, account, f.jobID)
		s.mu.Lock()
		n := s.nodes[f.nodeID]
		var nj *nodeJob
		if n != nil {
			nj = n.job(f.jobID)
		}
		if n != nil && nj != nil && nj.prep != nil && err == nil && ok && n.usable() {
			s.queueJobTask(n, nj, kindJobPrep, jr)
			s.mu.Unlock()
			return
		}
		if nj != nil && nj.prep != nil {
			// The job is gone or the node cannot run it: the retry cannot
			// happen, so the preparation task failed.
			nj.prep.State, nj.prep.Result = "completed", batch.TaskFailure
		}
		s.mu.Unlock()
		s.settle(ctx, account, f.nodeID, f.jobID)
	case f.settle:
		s.settle(ctx, account, f.nodeID, f.jobID)
	case f.released:
		s.released(ctx, account, f.jobID)
	}
}

// settle deals with the tasks waiting on a node for their job's
// preparation task once it ended: they run if it succeeded (or the job
// does not wait for success), else they go back to active for other nodes.
func (s *Service) settle(ctx context.Context, account, nodeID, jobID string) {
	s.mu.Lock()
	n := s.nodes[nodeID]
	if n == nil {
		s.mu.Unlock()
		return
	}
	nj := n.job(jobID)
	if nj == nil || nj.prepPending() {
		s.mu.Unlock()
		return
	}
	ok := !nj.prepFailed()
	var waiting []*run
	for id, r := range n.runs {
		if r.waiting && strings.EqualFold(r.jobID, jobID) {
			r.waiting = false
			waiting = append(waiting, r)
			if !ok {
				delete(n.runs, id)
			}
		}
	}
	s.refreshState(n)
	s.mu.Unlock()
	if !ok {
		s.requeue(ctx, account, waiting, nodeID)
		return
	}
	for _, r := range waiting {
		started, err := s.cfg.Tasks.Started(ctx, account, r.jobID, r.taskID, nodeID, s.now())
		if err != nil {
			s.log.Warn("compute: start task after job preparation", "job", r.jobID, "task", r.taskID, "err", err)
		}
		s.mu.Lock()
		if n.runs[r.id] == r {
			if started && r.spec != nil {
				n.outbox = append(n.outbox, *r.spec)
				s.wakeNode(n)
			} else {
				delete(n.runs, r.id)
				s.refreshState(n)
			}
		}
		s.mu.Unlock()
	}
	s.Kick()
}

// resetJobs marks the preparation tasks a node must run again: after a
// reboot those that did not succeed or rerun after reboots, after its
// files were dropped (all). Caller holds s.mu.
// A release task the node was running is lost with its run: it failed.
// It returns the jobs whose release task that ended.
func (n *liveNode) resetJobs(all bool, now time.Time) []string {
	var ended []string
	for _, nj := range n.jobs {
		if r := nj.release; r != nil && r.State == "running" {
			r.State, r.Result, r.EndTime = "completed", batch.TaskFailure, &now
			r.FailureCode, r.FailureMessage = "TaskEnded", "The node stopped the job release task (it rejoined its pool or dropped the account's data)."
			ended = append(ended, nj.jobID)
		}
		if nj.prep == nil {
			continue
		}
		if all || nj.rerun || nj.prep.State != "completed" || nj.prep.Result != batch.TaskSuccess {
			nj.stale = true
		}
	}
	return ended
}

// releasePending reports whether a job's release task is still to run, or
// runs, on some node that ran its preparation task. Caller holds s.mu.
func (s *Service) releasePending(account, jobID string) bool {
	key := strings.ToLower(jobID)
	for _, n := range s.nodes {
		if !strings.EqualFold(n.Account, account) {
			continue
		}
		nj := n.jobs[key]
		if nj != nil && nj.hasPrep && nj.prep != nil && (nj.release == nil || nj.release.State == "running" || nj.releaseRun != nil) {
			return true
		}
	}
	return false
}

// ReleasePending reports whether a job's release task is still to run, or
// runs, on some node: a terminated job stays terminating until it has
// (batch.DataService.ReleasePending).
func (s *Service) ReleasePending(account, jobID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.releasePending(account, jobID)
}

// released completes a terminating job once no release task of it is left
// to run (Config.JobReleased).
func (s *Service) released(ctx context.Context, account string, jobIDs ...string) {
	if s.cfg.JobReleased == nil {
		return
	}
	for _, id := range jobIDs {
		s.mu.Lock()
		pending := s.releasePending(account, id)
		s.mu.Unlock()
		if !pending {
			if err := s.cfg.JobReleased(context.WithoutCancel(ctx), account, id); err != nil {
				s.log.Warn("compute: complete a terminated job after its release tasks", "job", id, "err", err)
			}
		}
	}
}

// JobEnded runs a job's release task on every node that ran its
// preparation task, once the job's runs there have ended (the caller kills
// them); deleted forgets the job on the nodes once that is done.
func (s *Service) JobEnded(account string, job *batch.Job, deleted bool) {
	jr, hasRelease := releaseRun(job)
	key := strings.ToLower(job.ID)
	// A terminated job waits in state terminating for its release tasks;
	// if none is left (the nodes went meanwhile), it completes now.
	defer s.released(context.Background(), account, job.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		if !strings.EqualFold(n.Account, account) {
			continue
		}
		nj := n.jobs[key]
		if nj == nil {
			continue
		}
		if !nj.hasPrep {
			// Nothing to release; none of the job's tasks runs again.
			delete(n.jobs, key)
			continue
		}
		nj.deleted = nj.deleted || deleted
		ran := nj.prep != nil
		if !ran || !hasRelease || nj.release != nil || nj.releaseRun != nil {
			if deleted && nj.releaseRun == nil && (nj.release == nil || nj.release.State == "completed") {
				delete(n.jobs, key)
			}
			continue
		}
		s.queueJobTask(n, nj, kindJobRelease, jr)
		s.dispatchReleases(n)
	}
}

// JobTaskStatus lists a job's preparation and release tasks on the nodes
// that ran them, by node id.
func (s *Service) JobTaskStatus(account, jobID string) []JobTaskStatus {
	key := strings.ToLower(jobID)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []JobTaskStatus
	for _, n := range s.nodes {
		if !strings.EqualFold(n.Account, account) {
			continue
		}
		nj := n.jobs[key]
		if nj == nil || !nj.hasPrep || nj.prep == nil || nj.prep.StartTime.IsZero() {
			continue
		}
		st := JobTaskStatus{PoolID: n.PoolID, NodeID: n.ID, Preparation: *nj.prep}
		if nj.release != nil {
			r := *nj.release
			st.Release = &r
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

// releaseRun is a job's release task as a node runs it: maxWallClockTime
// defaults to (and is at most) 15 minutes; it is not retried.
func releaseRun(job *batch.Job) (JobTaskRun, bool) {
	rt := job.Spec.JobReleaseTask
	if rt == nil || job.Spec.JobPreparationTask == nil {
		return JobTaskRun{}, false
	}
	run := jobTaskRun(job, rt.CommandLine, rt.EnvironmentSettings, rt.UserIdentity, nil)
	run.MaxRetries, run.MaxWallClock = 0, batch.MaxReleaseWallClock
	if rt.MaxWallClockTime != nil {
		if d, err := parseDuration(*rt.MaxWallClockTime); err == nil && d > 0 && d < batch.MaxReleaseWallClock {
			run.MaxWallClock = d
		}
	}
	return JobTaskRun{TaskID: job.Spec.ReleaseTaskID(), TaskRun: run}, true
}

// JobPreparation returns a job's preparation task as a node runs it. Its
// maxTaskRetryCount is its own (0 unless given), not the job's.
func (b *BatchTasks) JobPreparation(ctx context.Context, account, jobID string) (JobTaskRun, bool, error) {
	job, err := b.Data.GetJob(ctx, account, jobID)
	if custody.IsNotFound(err) {
		return JobTaskRun{}, false, nil
	}
	if err != nil {
		return JobTaskRun{}, false, err
	}
	p := job.Spec.JobPreparationTask
	if p == nil {
		return JobTaskRun{}, false, nil
	}
	run := jobTaskRun(job, p.CommandLine, p.EnvironmentSettings, p.UserIdentity, p.Constraints)
	run.MaxRetries = 0
	if c := p.Constraints; c != nil && c.MaxTaskRetryCount != nil {
		run.MaxRetries = int(*c.MaxTaskRetryCount)
	}
	return JobTaskRun{TaskID: job.Spec.PreparationTaskID(), TaskRun: run, WaitForSuccess: p.WaitsForSuccess(), RerunAfterReboot: p.RerunsAfterReboot()}, true, nil
}

// Started moves a task waiting in state preparing on nodeID to running.
func (b *BatchTasks) Started(ctx context.Context, account, jobID, taskID, nodeID string, at time.Time) (bool, error) {
	for attempt := 0; attempt < 5; attempt++ {
		r, err := b.Store.Task(ctx, account, jobID, taskID)
		if custody.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if r.State != batch.TaskPreparing || r.Outcome.NodeID != nodeID {
			return false, nil
		}
		prev := r.ETag
		r.PreviousState, r.PreviousStateTransitionTime = r.State, r.StateTransitionTime
		r.State, r.StateTransitionTime, r.LastModified, r.ETag = batch.TaskRunning, at, at, newTaskETag()
		err = b.Store.UpdateTask(ctx, account, r, prev)
		if custody.ErrorKind(err) == custody.KindPreconditionFailed {
			continue
		}
		return err == nil, err
	}
	return false, nil
}

// jobTaskRun is what a node runs for a job preparation or release task of
// job: its command line, the job's common environment under its own, its
// user and constraints.
func jobTaskRun(job *batch.Job, commandLine string, env []batch.EnvironmentSetting, u *batch.UserIdentity, c *batch.TaskConstraints) TaskRun {
	return taskRun(&batch.TaskRecord{}, &batch.TaskSpec{CommandLine: commandLine, EnvironmentSettings: env, UserIdentity: u, Constraints: c}, job)
}

// completed applies what a task's completion does to its job, in Azure's
// order: the job action of its exit conditions (if the job's onTaskFailure
// is performexitoptionsjobaction), then the job manager task's
// killJobOnCompletion. It reports whether it ended the job; if not, the
// caller checks the job's onAllTasksComplete.
func (b *BatchTasks) completed(ctx context.Context, account string, r *batch.TaskRecord) bool {
	job, err := b.Data.GetJob(ctx, account, r.JobID)
	if err != nil || (job.State != batch.JobActive && job.State != batch.JobDisabled) {
		return false
	}
	if job.PerformsExitActions() {
		if a, dek, err := b.Keys.DEK(ctx, account); err == nil {
			if spec, err := openTask(a, dek, r); err == nil {
				switch batch.ExitDispositionOf(spec.ExitConditions, &r.Outcome).JobAction {
				case batch.JobActionTerminate:
					_, _ = b.Data.TerminateJob(ctx, account, job.ID, "", batch.TerminateReasonTaskFailed)
					return true
				case batch.JobActionDisable:
					if job.State == batch.JobActive {
						_, _ = b.Data.DisableJob(ctx, account, job.ID, "", "requeue")
					}
				}
			}
		}
	}
	if m := job.Spec.JobManagerTask; m != nil && strings.EqualFold(m.ID, r.ID) && m.KillsJobOnCompletion() {
		_, _ = b.Data.TerminateJob(ctx, account, job.ID, "", batch.TerminateReasonJMComplete)
		return true
	}
	return false
}

// endedRun is a run stopped before it reached its node.
type endedRun struct {
	nodeID string
	r      *run
}

// endKilled records that a task stopped before its run reached the node
// (it waited for its job's preparation task) ended as terminated.
func (s *Service) endKilled(ctx context.Context, account, nodeID string, r *run) {
	now := s.now()
	res := RunResult{NodeID: nodeID, ExitCode: -1, StartTime: now, EndTime: now, Outcome: OutcomeFailed,
		FailureCode: "TaskEnded", FailureMessage: "The task was terminated."}
	if err := s.cfg.Tasks.FinishTask(ctx, account, r.jobID, r.taskID, res); err != nil {
		s.log.Warn("compute: end a stopped task", "job", r.jobID, "task", r.taskID, "err", err)
	}
}
