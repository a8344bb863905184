package compute

import (
	"context"
	"custody/node"
	"time"
)

// RunnableTask is an active task the scheduler may start.
type RunnableTask struct {
	JobID         string
	TaskID        string
	RequiredSlots int
	// Exclusive and DedicatedOnly are a job manager task's runExclusive
	// and allowLowPriorityNode false.
	Exclusive     bool
	DedicatedOnly bool
}

// TaskRun is what a node needs to run a task: the unsealed command line and
// environment. It exists only in memory and on the wire to the node.
type TaskRun struct {
	CommandLine string
	// UserIdentity is the task's userIdentity (nil: the pool's non-admin
	// auto-user).
	UserIdentity *node.UserIdentity
	Env          map[string]string
	MaxWallClock time.Duration
	// MaxRetries is the task's maxTaskRetryCount (-1: unlimited).
	MaxRetries int
	RetryCount int
	// JobPrepTaskID is the id of the job's preparation task, if it has one
	// (the node gives tasks its directory).
	JobPrepTaskID string
}

// JobTaskRun is a job preparation or release task, as a node runs it.
type JobTaskRun struct {
	TaskID string
	TaskRun
	// WaitForSuccess and RerunAfterReboot are the preparation task's
	// waitForSuccess and rerunOnNodeRebootAfterSuccess.
	WaitForSuccess   bool
	RerunAfterReboot bool
}

// HeldTask is a task a previous server process left running on a remote
// node whose agent may still run it: it stays running, and off the
// scheduler, until that agent has killed its runs.
type HeldTask struct {
	Account string
	JobID   string
	TaskID  string
	NodeID  string
	// RequiredSlots, RetryCount and MaxRetries are the task's, for a
	// server that resumes the run (0 slots: one).
	RequiredSlots int
	RetryCount    int
	MaxRetries    int
}

// RunResult is how a task's run ended, as reported by its node.
type RunResult struct {
	NodeID    string
	ExitCode  int
	StartTime time.Time
	EndTime   time.Time
	// Outcome says what to do with the task.
	Outcome Outcome
	// FailureCode and FailureMessage describe a failure (Azure's
	// failureInfo), if any.
	FailureCode    string
	FailureMessage string
}

// Tasks is the jobs and tasks service as the compute service drives it.
// At runtime it is implemented over the batch data store (server wiring);
// tests use the same store.
type Tasks interface {
	// Runnable returns up to limit tasks of the pool's active jobs that may
	// start now: active, dependencies met, in scheduling order (job
	// priority, then job and task creation).
	Runnable(ctx context.Context, account, poolID string, limit int) ([]RunnableTask, error)
	// StartTask moves an active task to running on nodeID (only if it is
	// still active) and returns what the node must run. ok is false if the
	// task is no longer active.
	StartTask(ctx context.Context, account, jobID, taskID, nodeID string, at time.Time) (run TaskRun, ok bool, err error)
	// StartTasks is StartTask for many tasks of one account, written in one
	// transaction: started[i] answers starts[i].
	StartTasks(ctx context.Context, account string, starts []TaskStart, at time.Time) (started []StartedTask, err error)
	// FinishTask records the end of a running task's run on nodeID: it
	// completes, goes back to active for a retry, or is requeued, as
	// res.Outcome says. A task no longer running on nodeID is left alone.
	FinishTask(ctx context.Context, account, jobID, taskID string, res RunResult) error
	// FinishTasks is FinishTask for many runs of one account, written in
	// one transaction (a task that changed meanwhile is retried alone).
	FinishTasks(ctx context.Context, account string, ends []TaskEnd) error
	// Started moves a task waiting in state preparing on nodeID to
	// running; ok is false if it no longer waits there.
	Started(ctx context.Context, account, jobID, taskID, nodeID string, at time.Time) (ok bool, err error)
	// JobPreparation returns the job's preparation task as a node runs it;
	// ok is false if the job has none or is gone.
	JobPreparation(ctx context.Context, account, jobID string) (run JobTaskRun, ok bool, err error)
}

// TaskStart asks for a task to be started on a node.
type TaskStart struct {
	JobID, TaskID, NodeID string
	// Preparing: the task waits on the node, in state preparing, for its
	// job's preparation task (Started moves it to running).
	Preparing bool
}

// StartedTask answers a TaskStart: OK is false when the task is no longer
// active (nothing to run).
type StartedTask struct {
	Run TaskRun
	OK  bool
}

// TaskEnd is the end of one task's run.
type TaskEnd struct {
	JobID, TaskID string
	Result        RunResult
}
