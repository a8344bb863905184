package compute

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"custody"
	"custody/batch"
	"custody/node"
)

// BatchTasks implements Tasks over the batch data plane's store: task
// states, times, retry/requeue counts and the outcome of the last run (exit
// code, result, failure, pool and node) are written to the task records,
// each change in one update, so they survive a restart together.
type BatchTasks struct {
	Keys  Keys
	Data  *batch.DataService
	Store batch.DataStore
}

var _ Tasks = (*BatchTasks)(nil)

func taskRef(job, id string) batch.Ref {
	return batch.Ref{Kind: batch.KindTask, ID: strings.ToLower(job) + "/" + strings.ToLower(id), Field: "spec"}
}

func openTask(a *batch.Account, dek *batch.DEK, r *batch.TaskRecord) (*batch.TaskSpec, error) {
	b, err := dek.Open(a.UID, taskRef(r.JobID, r.ID), r.Sealed)
	if err != nil {
		return nil, custody.Internal(err, "open task %s", r.ID)
	}
	var s batch.TaskSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, custody.Internal(err, "decode task %s", r.ID)
	}
	return &s, nil
}

func newTaskETag() string {
	b := make([]byte, 7)
	_, _ = rand.Read(b)
	return "0x8DD" + strings.ToUpper(hex.EncodeToString(b))
}

// Runnable lists active tasks of the pool's active jobs whose
// dependencies are met, tasks in id order. Jobs come by priority, highest
// first; jobs of equal priority by creation time, then id. A job with
// maxParallelTasks (a positive number; -1 or unset is no limit, and the data
// plane refuses 0) gets no more candidates than it has tasks running below
// that limit, so the tasks placed from one list never exceed it.
func (b *BatchTasks) Runnable(ctx context.Context, account, poolID string, limit int) ([]RunnableTask, error) {
	a, dek, err := b.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	jobs, err := b.Store.ListJobs(ctx, a.Name, batch.ListOptions{States: []string{batch.JobActive}, Limit: batch.MaxPageSize})
	if err != nil {
		return nil, err
	}
	var pool []*batch.Job
	for _, jr := range jobs {
		if !strings.EqualFold(jr.PoolID, poolID) {
			continue
		}
		job, err := b.Data.OpenJob(a, dek, jr)
		if err != nil {
			return nil, err
		}
		pool = append(pool, job)
	}
	sort.SliceStable(pool, func(i, j int) bool {
		pi, pj := jobPriority(pool[i]), jobPriority(pool[j])
		if pi != pj {
			return pi > pj
		}
		if ci, cj := pool[i].CreationTime, pool[j].CreationTime; !ci.Equal(cj) {
			return ci.Before(cj)
		}
		return strings.ToLower(pool[i].ID) < strings.ToLower(pool[j].ID)
	})
	var out []RunnableTask
	for _, job := range pool {
		if len(out) >= limit {
			break
		}
		room := limit - len(out)
		if m := job.Spec.MaxParallelTasks; m != nil && *m > 0 {
			states, err := b.Store.TaskStates(ctx, a.Name, job.ID)
			if err != nil {
				return nil, err
			}
			room = min(room, int(*m)-states[batch.TaskRunning]-states[batch.TaskPreparing])
			if room <= 0 {
				continue
			}
		}
		usesDeps := job.Spec.UsesTaskDependencies != nil && *job.Spec.UsesTaskDependencies
		// Without dependencies every active task is runnable, so read only as
		// many as can be taken; with them, read further ahead past tasks
		// still waiting on others.
		want := room
		if usesDeps {
			want = max(4*limit, 64)
		}
		tasks, err := b.Store.ListTasks(ctx, a.Name, job.ID, batch.ListOptions{States: []string{batch.TaskActive}, Limit: want})
		if err != nil {
			return nil, err
		}
		m := job.Spec.JobManagerTask
		if m != nil {
			// The job manager task runs first: while it waits, the job's
			// other tasks do.
			if mr, err := b.Store.Task(ctx, a.Name, job.ID, m.ID); err == nil && mr.State == batch.TaskActive {
				tasks = []*batch.TaskRecord{mr}
			}
		}
		for _, tr := range tasks {
			if room <= 0 {
				break
			}
			spec, err := openTask(a, dek, tr)
			if err != nil {
				return nil, err
			}
			if usesDeps && spec.DependsOn != nil {
				met, _ := DependenciesMet(depsOf(spec.DependsOn), func(id string) (DependencyState, bool) {
					return b.depState(ctx, a, dek, job.ID, id)
				})
				if !met {
					continue
				}
			}
			slots := 1
			if spec.RequiredSlots != nil {
				slots = int(*spec.RequiredSlots)
			}
			rt := RunnableTask{JobID: job.ID, TaskID: tr.ID, RequiredSlots: slots}
			if m != nil && strings.EqualFold(tr.ID, m.ID) {
				rt.Exclusive, rt.DedicatedOnly = m.Exclusive(), !m.LowPriorityAllowed()
			}
			out = append(out, rt)
			room--
		}
	}
	return out, nil
}

// jobPriority is a job's priority, 0 when it was not given.
func jobPriority(j *batch.Job) int32 {
	if j.Spec.Priority == nil {
		return 0
	}
	return *j.Spec.Priority
}

func depsOf(d *batch.TaskDependencies) Dependencies {
	out := Dependencies{TaskIDs: d.TaskIDs}
	for _, r := range d.TaskIDRanges {
		out.Ranges = append(out.Ranges, [2]int{int(r.Start), int(r.End)})
	}
	return out
}

// depState is how a dependency stands: a completed task satisfies or
// blocks its dependents as its exit conditions' dependencyAction says
// (satisfy for exit code 0, block otherwise, unless they say else).
func (b *BatchTasks) depState(ctx context.Context, a *batch.Account, dek *batch.DEK, job, id string) (DependencyState, bool) {
	r, err := b.Store.Task(ctx, a.Name, job, id)
	if err != nil {
		return DepWaiting, false
	}
	if r.State != batch.TaskCompleted {
		return DepWaiting, true
	}
	spec, err := openTask(a, dek, r)
	if err != nil {
		return DepWaiting, true
	}
	outcome := r.Outcome
	if outcome.Result == batch.TaskFailure && outcome.FailureCode == "TaskEnded" {
		outcome.ExitCode = nil // terminated: no exit code of its own
	}
	if batch.ExitDispositionOf(spec.ExitConditions, &outcome).DependencyAction == batch.DependencyBlock {
		return DepFailed, true
	}
	return DepSatisfied, true
}

// StartTask moves an active task to running.
func (b *BatchTasks) StartTask(ctx context.Context, account, jobID, taskID, nodeID string, at time.Time) (TaskRun, bool, error) {
	out, err := b.StartTasks(ctx, account, []TaskStart{{JobID: jobID, TaskID: taskID, NodeID: nodeID}}, at)
	if err != nil {
		return TaskRun{}, false, err
	}
	return out[0].Run, out[0].OK, nil
}

// StartTasks moves active tasks to running, all in one transaction; a task
// that is no longer active, or changed while it was read, is not started.
// Each job is read and opened once.
func (b *BatchTasks) StartTasks(ctx context.Context, account string, starts []TaskStart, at time.Time) ([]StartedTask, error) {
	out := make([]StartedTask, len(starts))
	a, dek, err := b.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	type pending struct {
		i    int
		spec *batch.TaskSpec
		job  *batch.Job
	}
	jobs := map[string]*batch.Job{}
	var recs []*batch.TaskRecord
	var prevs []string
	var ps []pending
	for i, st := range starts {
		r, err := b.Store.Task(ctx, a.Name, st.JobID, st.TaskID)
		if custody.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if r.State != batch.TaskActive {
			continue
		}
		spec, err := openTask(a, dek, r)
		if err != nil {
			return nil, err
		}
		key := strings.ToLower(st.JobID)
		job, ok := jobs[key]
		if !ok {
			job, err = b.Data.GetJob(ctx, a.Name, st.JobID)
			if custody.IsNotFound(err) {
				jobs[key] = nil
				continue
			}
			if err != nil {
				return nil, err
			}
			jobs[key] = job
		}
		if job == nil || job.State != batch.JobActive {
			// Ended or disabled since Runnable read it: a terminate's kill
			// may have come before this start began (see Service.start).
			continue
		}
		prevs = append(prevs, r.ETag)
		r.PreviousState, r.PreviousStateTransitionTime = r.State, r.StateTransitionTime
		r.State, r.StateTransitionTime, r.StartTime, r.LastModified = batch.TaskRunning, at, at, at
		if st.Preparing {
			r.State = batch.TaskPreparing
		}
		r.EndTime = time.Time{}
		r.ETag = newTaskETag()
		r.Outcome.NodeID, r.Outcome.PoolID = st.NodeID, job.PoolID
		r.Outcome.ExitCode, r.Outcome.Result, r.Outcome.FailureCode, r.SealedFailureMessage = nil, "", "", nil
		recs = append(recs, r)
		ps = append(ps, pending{i, spec, job})
	}
	updated, err := b.Store.UpdateTasks(ctx, a.Name, recs, prevs)
	if err != nil {
		return nil, err
	}
	for k, ok := range updated {
		if ok {
			p := ps[k]
			run := taskRun(recs[k], p.spec, p.job)
			run.JobPrepTaskID = p.job.Spec.PreparationTaskID()
			out[p.i] = StartedTask{Run: run, OK: true}
		}
	}
	return out, nil
}

// taskRun is what a node needs to run a task.
func taskRun(r *batch.TaskRecord, spec *batch.TaskSpec, job *batch.Job) TaskRun {
	run := TaskRun{Env: map[string]string{}, RetryCount: int(r.RetryCount)}
	for _, e := range job.Spec.CommonEnvironmentSettings {
		run.Env[e.Name] = deref(e.Value)
	}
	for _, e := range spec.EnvironmentSettings {
		run.Env[e.Name] = deref(e.Value)
	}
	run.CommandLine = spec.CommandLine
	if u := spec.UserIdentity; u != nil {
		run.UserIdentity = &node.UserIdentity{}
		if u.Username != nil {
			run.UserIdentity.UserName = *u.Username
		}
		if a := u.AutoUser; a != nil {
			run.UserIdentity.AutoUser = &node.AutoUser{}
			if a.Scope != nil {
				run.UserIdentity.AutoUser.Scope = string(*a.Scope)
			}
			if a.ElevationLevel != nil {
				run.UserIdentity.AutoUser.ElevationLevel = string(*a.ElevationLevel)
			}
		}
	}
	run.MaxRetries = maxRetries(job, spec)
	if c := spec.Constraints; c != nil {
		if c.MaxWallClockTime != nil {
			if d, err := parseDuration(*c.MaxWallClockTime); err == nil && d < 100*365*24*time.Hour {
				run.MaxWallClock = d
			}
		}
	}
	return run
}

// maxRetries is a task's maxTaskRetryCount, its job's when it has none.
func maxRetries(job *batch.Job, spec *batch.TaskSpec) int {
	n := 0
	if c := job.Spec.Constraints; c != nil && c.MaxTaskRetryCount != nil {
		n = int(*c.MaxTaskRetryCount)
	}
	if c := spec.Constraints; c != nil && c.MaxTaskRetryCount != nil {
		n = int(*c.MaxTaskRetryCount)
	}
	return n
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// FinishTask records a run's end on the task: its new state and the run's
// outcome in one update. The failure message is sealed with the account's
// DEK (it can quote the command); if the DEK cannot be had, the failure code
// is kept without a message.
func (b *BatchTasks) FinishTask(ctx context.Context, account, jobID, taskID string, res RunResult) error {
	sealedFailure := b.sealFailure(ctx, account, jobID, taskID, res)
	for attempt := 0; attempt < 5; attempt++ {
		r, err := b.Store.Task(ctx, account, jobID, taskID)
		if custody.IsNotFound(err) {
			return nil // deleted
		}
		if err != nil {
			return err
		}
		prev := r.ETag
		if !applyEnd(r, res, sealedFailure) {
			return nil
		}
		err = b.Store.UpdateTask(ctx, account, r, prev)
		if custody.ErrorKind(err) == custody.KindPreconditionFailed {
			continue
		}
		if err != nil {
			return err
		}
		if r.State == batch.TaskCompleted && !b.completed(ctx, account, r) {
			b.maybeTerminateJob(ctx, account, jobID)
		}
		return nil
	}
	return custody.Errorf(custody.KindConflict, "TaskChanged", "Task %q kept changing while its run was recorded.", taskID)
}

// FinishTasks records the ends of many runs of one account in one
// transaction; a task that changed between its read and the write is
// recorded again on its own (FinishTask). Each job whose tasks completed is
// checked once for onAllTasksComplete.
func (b *BatchTasks) FinishTasks(ctx context.Context, account string, ends []TaskEnd) error {
	var recs []*batch.TaskRecord
	var prevs []string
	var which []TaskEnd
	for _, e := range ends {
		r, err := b.Store.Task(ctx, account, e.JobID, e.TaskID)
		if custody.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		prev := r.ETag
		if !applyEnd(r, e.Result, b.sealFailure(ctx, account, e.JobID, e.TaskID, e.Result)) {
			continue
		}
		recs, prevs, which = append(recs, r), append(prevs, prev), append(which, e)
	}
	updated, err := b.Store.UpdateTasks(ctx, account, recs, prevs)
	if err != nil {
		return err
	}
	var firstErr error
	completed := map[string]string{}
	for k, ok := range updated {
		e := which[k]
		if !ok {
			if err := b.FinishTask(ctx, account, e.JobID, e.TaskID, e.Result); err != nil && firstErr == nil {
				firstErr = err
			}
			continue
		}
		if recs[k].State == batch.TaskCompleted && !b.completed(ctx, account, recs[k]) {
			completed[strings.ToLower(e.JobID)] = e.JobID
		}
	}
	for _, job := range completed {
		b.maybeTerminateJob(ctx, account, job)
	}
	return firstErr
}

// sealFailure seals a finished run's failure message with the account's
// DEK (nil when there is none to keep, or the DEK cannot be had).
func (b *BatchTasks) sealFailure(ctx context.Context, account, jobID, taskID string, res RunResult) []byte {
	if res.FailureMessage == "" || (res.Outcome != OutcomeSucceeded && res.Outcome != OutcomeFailed) {
		return nil
	}
	a, dek, err := b.Keys.DEK(ctx, account)
	if err != nil {
		return nil
	}
	return batch.SealTaskFailureMessage(a, dek, jobID, taskID, res.FailureMessage)
}

// applyEnd changes r as the end of its run says; false when the task is no
// longer running on the reporting node (terminated, or running elsewhere
// now) and is to be left alone.
func applyEnd(r *batch.TaskRecord, res RunResult, sealedFailure []byte) bool {
	if r.State != batch.TaskRunning && r.State != batch.TaskPreparing {
		return false // terminated meanwhile
	}
	if r.Outcome.NodeID != "" && r.Outcome.NodeID != res.NodeID {
		return false // running elsewhere now
	}
	now := time.Now().UTC()
	r.PreviousState, r.PreviousStateTransitionTime = r.State, r.StateTransitionTime
	r.StateTransitionTime, r.LastModified, r.ETag = now, now, newTaskETag()
	o := &r.Outcome
	switch res.Outcome {
	case OutcomeSucceeded, OutcomeFailed:
		r.State, r.EndTime = batch.TaskCompleted, res.EndTime
		if !res.StartTime.IsZero() {
			r.StartTime = res.StartTime
		}
		code := res.ExitCode
		o.ExitCode, o.Result = &code, batch.TaskSuccess
		if res.Outcome == OutcomeFailed {
			o.Result = batch.TaskFailure
		}
		o.FailureCode, r.SealedFailureMessage = res.FailureCode, sealedFailure
	case OutcomeRetry:
		r.State = batch.TaskActive
		r.RetryCount++
		code := res.ExitCode
		o.ExitCode, o.LastRetryTime, o.NodeID = &code, now, ""
	case OutcomeRequeue:
		r.State = batch.TaskActive
		r.RequeueCount++
		o.LastRequeueTime, o.NodeID = now, ""
	}
	return true
}

// maybeTerminateJob ends a job with onAllTasksComplete terminatejob once
// all of its tasks are completed.
func (b *BatchTasks) maybeTerminateJob(ctx context.Context, account, jobID string) {
	job, err := b.Data.GetJob(ctx, account, jobID)
	if err != nil || job.Spec.OnAllTasksComplete == nil || !strings.EqualFold(*job.Spec.OnAllTasksComplete, "terminatejob") {
		return
	}
	states, err := b.Store.TaskStates(ctx, account, jobID)
	if err != nil || states[batch.TaskActive] > 0 || states[batch.TaskRunning] > 0 || states[batch.TaskPreparing] > 0 || states[batch.TaskCompleted] == 0 {
		return
	}
	_, _ = b.Data.TerminateJob(ctx, account, jobID, "", batch.TerminateReasonAllTasksComplete)
}

// NodeCertificate gives a node a certificate's data (Certificates).
func (b *BatchTasks) NodeCertificate(ctx context.Context, account, alg, thumbprint string) (node.Certificate, error) {
	c, err := b.Data.GetCertificate(ctx, account, alg, thumbprint)
	if err != nil {
		return node.Certificate{}, err
	}
	return node.Certificate{Thumbprint: c.Thumbprint, ThumbprintAlgorithm: c.ThumbprintAlgorithm, Format: c.Spec.Format,
		Data: c.Spec.Data, Password: deref(c.Spec.Password)}, nil
}

// parseDuration parses an ISO 8601 duration (PT1H30M, P1DT2S, PT0.5S).
func parseDuration(s string) (time.Duration, error) {
	bad := custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "%q is not an ISO 8601 duration.", s)
	up := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(up, "P") || len(up) < 3 {
		return 0, bad
	}
	var d float64
	inTime := false
	num := ""
	for _, c := range up[1:] {
		switch {
		case c == 'T':
			inTime = true
		case (c >= '0' && c <= '9') || c == '.':
			num += string(c)
		default:
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, bad
			}
			num = ""
			var u time.Duration
			switch {
			case !inTime && c == 'D':
				u = 24 * time.Hour
			case !inTime && c == 'W':
				u = 7 * 24 * time.Hour
			case inTime && c == 'H':
				u = time.Hour
			case inTime && c == 'M':
				u = time.Minute
			case inTime && c == 'S':
				u = time.Second
			default:
				return 0, bad
			}
			d += f * float64(u)
		}
	}
	if num != "" {
		return 0, bad
	}
	if d > float64(1<<62) {
		return time.Duration(1 << 62), nil
	}
	return time.Duration(d), nil
}

// RequeueRunning puts every running task of an account back to active
// (requeueCount+1): node state lives in the server's memory, so after a
// restart no node runs them for this process. A task whose record says it
// runs on a node for which hold reports true (a remote node whose agent may
// still run it) is left running and returned instead.
func (b *BatchTasks) RequeueRunning(ctx context.Context, account string, hold func(nodeID string) bool) ([]HeldTask, error) {
	// Every job, a page at a time (not only the first page's).
	var jobs []*batch.JobRecord
	for after := ""; ; {
		page, err := b.Store.ListJobs(ctx, account, batch.ListOptions{Limit: batch.MaxPageSize, After: after})
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, page...)
		if len(page) < batch.MaxPageSize {
			break
		}
		after = strings.ToLower(page[len(page)-1].ID)
	}
	var held []HeldTask
	for _, j := range jobs {
		if j.State == batch.JobTerminating {
			// Its release tasks' executions lived with the previous
			// process's nodes: the job completes.
			// (A locked account's stays terminating until a restart.)
			_ = b.Data.FinishTermination(ctx, account, j.ID)
		}
		after := ""
		for {
			ts, err := b.Store.ListTasks(ctx, account, j.ID, batch.ListOptions{States: []string{batch.TaskRunning, batch.TaskPreparing}, Limit: batch.MaxPageSize, After: after})
			if err != nil {
				return held, err
			}
			for _, r := range ts {
				after = strings.ToLower(r.ID)
				if id := r.Outcome.NodeID; id != "" && hold != nil && hold(id) {
					h := HeldTask{Account: account, JobID: j.ID, TaskID: r.ID, NodeID: id, RequiredSlots: 1, RetryCount: int(r.RetryCount)}
					b.heldLimits(ctx, account, j.ID, r, &h)
					held = append(held, h)
					continue
				}
				now := time.Now().UTC()
				prev := r.ETag
				r.PreviousState, r.PreviousStateTransitionTime = r.State, r.StateTransitionTime
				r.State, r.StateTransitionTime, r.LastModified, r.ETag = batch.TaskActive, now, now, newTaskETag()
				r.RequeueCount++
				r.Outcome.LastRequeueTime, r.Outcome.NodeID = now, ""
				if err := b.Store.UpdateTask(ctx, account, r, prev); err != nil && custody.ErrorKind(err) != custody.KindPreconditionFailed {
					return held, err
				}
			}
			if len(ts) < batch.MaxPageSize {
				break
			}
		}
	}
	return held, nil
}

// heldLimits fills in a held task's slots and retry limit from its spec and
// its job's (left at their defaults when the account's key is not at hand:
// its nodes then drop their runs anyway).
func (b *BatchTasks) heldLimits(ctx context.Context, account, jobID string, r *batch.TaskRecord, h *HeldTask) {
	a, dek, err := b.Keys.DEK(ctx, account)
	if err != nil {
		return
	}
	spec, err := openTask(a, dek, r)
	if err != nil {
		return
	}
	if spec.RequiredSlots != nil {
		h.RequiredSlots = int(*spec.RequiredSlots)
	}
	if job, err := b.Data.GetJob(ctx, a.Name, jobID); err == nil {
		h.MaxRetries = maxRetries(job, spec)
	}
}
