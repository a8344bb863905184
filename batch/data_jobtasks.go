package batch

import (
	"context"
	"errors"
	"strings"
	"time"

	"custody"
)

// Job manager, preparation and release tasks, exit conditions and task
// reactivation, with the Batch REST API's semantics (api-version
// 2024-07-01.20.0).
//
// The job manager task is an ordinary task of its job, created with the
// job; the job's spec keeps its settings (killJobOnCompletion, runExclusive,
// allowLowPriorityNode), which the compute service reads when it schedules
// and when the task completes. Preparation and release tasks run per node;
// their executions live with the compute service's nodes.

// Default ids of the job preparation and release tasks, as in Azure.
const (
	DefaultJobPreparationTaskID = "jobpreparation"
	DefaultJobReleaseTaskID     = "jobrelease"
)

// Job actions and dependency actions of exit options.
const (
	JobActionNone       = "none"
	JobActionDisable    = "disable"
	JobActionTerminate  = "terminate"
	DependencySatisfy   = "satisfy"
	DependencyBlock     = "block"
	onTaskFailureAction = "performexitoptionsjobaction"
)

// Terminate reasons the service gives a job (executionInfo.terminateReason).
const (
	TerminateReasonJMComplete       = "JMComplete"
	TerminateReasonTaskFailed       = "TaskFailed"
	TerminateReasonAllTasksComplete = "AllTasksComplete"
)

// Failure codes of task runs that are not the program's own exit: the task
// could not start (a pre-processing error) or its output files could not be
// uploaded.
const (
	FailureCommandProgramNotFound = "CommandProgramNotFound"
	FailureResourceFileDownload   = "ResourceFileDownloadError"
	FailureFileUpload             = "FileUploadError"
)

// PreparationTaskID is the id of a job's preparation task ("" if none).
func (s *JobSpec) PreparationTaskID() string {
	if s.JobPreparationTask == nil {
		return ""
	}
	if id := s.JobPreparationTask.ID; id != nil && *id != "" {
		return *id
	}
	return DefaultJobPreparationTaskID
}

// ReleaseTaskID is the id of a job's release task ("" if none).
func (s *JobSpec) ReleaseTaskID() string {
	if s.JobReleaseTask == nil {
		return ""
	}
	if id := s.JobReleaseTask.ID; id != nil && *id != "" {
		return *id
	}
	return DefaultJobReleaseTaskID
}

// ManagerTaskID is the id of a job's manager task ("" if none).
func (s *JobSpec) ManagerTaskID() string {
	if s.JobManagerTask == nil {
		return ""
	}
	return s.JobManagerTask.ID
}

// KillJobOnCompletion reports whether the job manager task's completion
// ends the job (Azure's default: true).
func (m *JobManagerTask) KillsJobOnCompletion() bool {
	return m.KillJobOnCompletion == nil || *m.KillJobOnCompletion
}

// Exclusive reports whether the job manager task takes a whole node
// (runExclusive; Azure's default: true).
func (m *JobManagerTask) Exclusive() bool { return m.RunExclusive == nil || *m.RunExclusive }

// LowPriorityAllowed reports whether the job manager task may run on a
// low-priority (Spot) node (Azure's default: true).
func (m *JobManagerTask) LowPriorityAllowed() bool {
	return m.AllowLowPriorityNode == nil || *m.AllowLowPriorityNode
}

// WaitsForSuccess reports whether a job's tasks wait on a node until the
// preparation task succeeded there (Azure's default: true).
func (p *JobPreparationTask) WaitsForSuccess() bool {
	return p.WaitForSuccess == nil || *p.WaitForSuccess
}

// RerunsAfterReboot reports whether a node that rebooted runs the
// preparation task again even after it succeeded (Azure's default: true).
func (p *JobPreparationTask) RerunsAfterReboot() bool {
	return p.RerunOnNodeRebootAfterSuccess == nil || *p.RerunOnNodeRebootAfterSuccess
}

// managerTaskSpec is the task a job manager task becomes.
func managerTaskSpec(m *JobManagerTask) TaskSpec {
	return TaskSpec{
		DisplayName: m.DisplayName, CommandLine: m.CommandLine, ContainerSettings: m.ContainerSettings,
		ResourceFiles: m.ResourceFiles, OutputFiles: m.OutputFiles, EnvironmentSettings: m.EnvironmentSettings,
		Constraints: m.Constraints, RequiredSlots: m.RequiredSlots, UserIdentity: m.UserIdentity,
		ApplicationPackageReferences: m.ApplicationPackageReferences, AuthenticationTokenSettings: m.AuthenticationTokenSettings,
	}
}

// validateJobTasks checks what a job's manager, preparation and release
// tasks must not share, after their own validation.
func validateJobTasks(id string, s *JobSpec) error {
	what := "Job " + id
	prep, rel, mgr := s.PreparationTaskID(), s.ReleaseTaskID(), s.ManagerTaskID()
	if prep != "" && rel != "" && strings.EqualFold(prep, rel) {
		return invalid("InvalidPropertyValue", "jobReleaseTask.id", "%s: the job preparation and release tasks both have the id %q; give them different ids.", what, prep)
	}
	if mgr != "" {
		if prep != "" && strings.EqualFold(mgr, prep) {
			return invalid("InvalidPropertyValue", "jobManagerTask.id", "%s: the job manager task has the id %q of the job preparation task; give it another id.", what, mgr)
		}
		if rel != "" && strings.EqualFold(mgr, rel) {
			return invalid("InvalidPropertyValue", "jobManagerTask.id", "%s: the job manager task has the id %q of the job release task; give it another id.", what, mgr)
		}
	}
	if r := s.JobReleaseTask; r != nil && r.MaxWallClockTime != nil {
		if d, err := ParseDuration(*r.MaxWallClockTime); err == nil && d > MaxReleaseWallClock {
			return invalid("InvalidPropertyValue", "jobReleaseTask.maxWallClockTime", "%s: the job release task's maxWallClockTime %s is longer than its limit of 15 minutes (PT15M).", what, *r.MaxWallClockTime)
		}
	}
	return nil
}

// validateTaskForJob checks a task against its job: its id may not be
// that of the job's preparation or release task, and its exit conditions
// may name a job action only if the job performs them.
func validateTaskForJob(id string, s *TaskSpec, job *Job) error {
	if p := job.Spec.PreparationTaskID(); p != "" && strings.EqualFold(id, p) {
		return custody.Errorf(custody.KindConflict, "TaskIdSameAsJobPreparationTask", "The task id %q is that of job %q's job preparation task; use another id.", id, job.ID)
	}
	if r := job.Spec.ReleaseTaskID(); r != "" && strings.EqualFold(id, r) {
		return custody.Errorf(custody.KindConflict, "TaskIdSameAsJobReleaseTask", "The task id %q is that of job %q's job release task; use another id.", id, job.ID)
	}
	e := s.ExitConditions
	if e == nil || job.performsExitActions() {
		return nil
	}
	check := func(prop string, o *ExitOptions) error {
		if o != nil && o.JobAction != nil && *o.JobAction != JobActionNone {
			return invalid("InvalidPropertyValue", "exitConditions."+prop+".jobAction",
				"Task %s: exitConditions.%s.jobAction is %s, but job %q has onTaskFailure noaction, so it takes no job actions; create the job with onTaskFailure performexitoptionsjobaction or remove the jobAction.", id, prop, *o.JobAction, job.ID)
		}
		return nil
	}
	for i := range e.ExitCodes {
		if err := check("exitCodes.exitOptions", &e.ExitCodes[i].ExitOptions); err != nil {
			return err
		}
	}
	for i := range e.ExitCodeRanges {
		if err := check("exitCodeRanges.exitOptions", &e.ExitCodeRanges[i].ExitOptions); err != nil {
			return err
		}
	}
	if err := check("preProcessingError", e.PreProcessingError); err != nil {
		return err
	}
	if err := check("fileUploadError", e.FileUploadError); err != nil {
		return err
	}
	return check("default", e.Default)
}

func (j *Job) performsExitActions() bool {
	return j.Spec.OnTaskFailure != nil && strings.EqualFold(*j.Spec.OnTaskFailure, onTaskFailureAction)
}

// PerformsExitActions reports whether the job's onTaskFailure is
// performexitoptionsjobaction.
func (j *Job) PerformsExitActions() bool { return j.performsExitActions() }

// ExitDisposition is what a completed task's exit conditions say: the job
// action (none, disable, terminate) and the dependency action (satisfy,
// block).
type ExitDisposition struct {
	JobAction        string
	DependencyAction string
}

// ExitDispositionOf applies a task's exit conditions to how its last run
// ended, as Azure does: a pre-processing error (the task could not start)
// takes preProcessingError, a file upload error fileUploadError, otherwise
// the exit code is looked up in exitCodes, then exitCodeRanges; a nonzero
// code or error not covered takes default. Unset actions default to none
// and satisfy for exit code 0, terminate and block for everything else.
func ExitDispositionOf(e *ExitConditions, o *TaskOutcome) ExitDisposition {
	pick := func(opts *ExitOptions, ok bool) ExitDisposition {
		d := ExitDisposition{JobAction: JobActionTerminate, DependencyAction: DependencyBlock}
		if ok {
			d = ExitDisposition{JobAction: JobActionNone, DependencyAction: DependencySatisfy}
		}
		if opts != nil {
			if opts.JobAction != nil {
				d.JobAction = strings.ToLower(*opts.JobAction)
			}
			if opts.DependencyAction != nil {
				d.DependencyAction = strings.ToLower(*opts.DependencyAction)
			}
		}
		return d
	}
	if e == nil {
		e = &ExitConditions{}
	}
	switch o.FailureCode {
	case FailureCommandProgramNotFound, FailureResourceFileDownload:
		if e.PreProcessingError != nil {
			return pick(e.PreProcessingError, false)
		}
		return pick(e.Default, false)
	case FailureFileUpload:
		if e.FileUploadError != nil {
			return pick(e.FileUploadError, false)
		}
		return pick(e.Default, false)
	}
	if o.ExitCode == nil {
		// Ended without an exit code of its own (terminated): a failure.
		return pick(e.Default, false)
	}
	code := int32(*o.ExitCode)
	for i := range e.ExitCodes {
		if e.ExitCodes[i].Code == code {
			return pick(&e.ExitCodes[i].ExitOptions, code == 0)
		}
	}
	for i := range e.ExitCodeRanges {
		if r := &e.ExitCodeRanges[i]; r.Start <= code && code <= r.End {
			return pick(&r.ExitOptions, code == 0)
		}
	}
	if code == 0 {
		return pick(nil, true)
	}
	return pick(e.Default, false)
}

// ReactivateTask makes a failed completed task active again, as Azure's
// reactivate: its retry count is reset to 0 and its previous exit code and
// failure information are gone. A task that is not completed, or that
// succeeded, cannot be reactivated (409), nor can a task of a completed,
// terminating or deleting job.
func (d *DataService) ReactivateTask(ctx context.Context, account, jobID, id, ifMatch string) (*Task, error) {
	a, _, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	jr, err := d.Store.Job(ctx, a.Name, jobID)
	if err != nil {
		return nil, err
	}
	switch jr.State {
	case JobCompleted, JobTerminating:
		return nil, custody.Errorf(custody.KindConflict, "JobCompleted", "The specified job is already in a completed state: task %q of job %q cannot be reactivated because the job has ended.", id, jr.ID)
	case JobDeleting:
		return nil, custody.Errorf(custody.KindConflict, "JobBeingDeleted", "The specified job has been marked for deletion: task %q of job %q cannot be reactivated.", id, jr.ID)
	}
	t, err := d.changeTask(ctx, account, jobID, id, ifMatch, func(t *Task) error {
		if t.State != TaskCompleted {
			return custody.Errorf(custody.KindConflict, "TaskNotCompleted", "Task %q of job %q is %s, not completed; only a task that completed with a failure can be reactivated.", t.ID, t.JobID, t.State)
		}
		if t.Outcome.Result != TaskFailure {
			return custody.Errorf(custody.KindConflict, "TaskCompletedSuccessfully", "Task %q of job %q completed successfully; only a task that completed with a failure can be reactivated. Add a new task to run it again.", t.ID, t.JobID)
		}
		now := d.now()
		t.PreviousState, t.PreviousStateTransitionTime = t.State, t.StateTransitionTime
		t.State, t.StateTransitionTime = TaskActive, now
		t.RetryCount, t.EndTime = 0, time.Time{}
		t.Outcome = TaskOutcome{LastRequeueTime: t.Outcome.LastRequeueTime}
		t.FailureMessage = ""
		return nil
	})
	if err != nil {
		return nil, err
	}
	if d.OnAdd != nil {
		d.OnAdd(account, jobID)
	}
	return t, nil
}

// MaxReleaseWallClock is the longest a job release task may run, and its
// default maxWallClockTime (Azure's 15 minutes).
const MaxReleaseWallClock = 15 * time.Minute

// addManagerTask creates a new job's manager task as a task of the job.
// If that fails the job is deleted again, so no job is left without the
// manager it was created with.
func (d *DataService) addManagerTask(ctx context.Context, a *Account, dek *DEK, j *Job) error {
	m := j.Spec.JobManagerTask
	if m == nil {
		return nil
	}
	now := d.now()
	t := &Task{TaskMeta: TaskMeta{JobID: j.ID, ID: m.ID, State: TaskActive, ETag: newETag(now),
		CreationTime: now, LastModified: now, StateTransitionTime: now}, Spec: managerTaskSpec(m)}
	rec, err := d.sealTask(a, dek, t)
	if err == nil {
		var created []bool
		if created, err = d.Store.CreateTasks(ctx, a.Name, []*TaskRecord{rec}); err == nil && !created[0] {
			err = taskExists(m.ID, j.ID)
		}
	}
	if err != nil {
		if derr := d.Store.DeleteJob(context.WithoutCancel(ctx), a.Name, j.ID); derr != nil {
			return custody.Internal(derr, "job %s: delete after its job manager task could not be created (%v)", j.ID, err)
		}
		return err
	}
	if d.OnAdd != nil {
		d.OnAdd(a.Name, j.ID)
	}
	return nil
}

func (d *DataService) releasePending(account string, j *Job) bool {
	return j.Spec.JobReleaseTask != nil && j.Spec.JobPreparationTask != nil && d.ReleasePending != nil && d.ReleasePending(account, j.ID)
}

var errNoChange = errors.New("no change")

// FinishTermination completes a job that is terminating, once its release
// tasks ran on every node that ran its preparation task (or could not:
// the node left, or the server restarted). A job in any other state is
// left alone.
func (d *DataService) FinishTermination(ctx context.Context, account, id string) error {
	_, err := d.changeJob(ctx, account, id, "", func(j *Job) error {
		if j.State != JobTerminating {
			return errNoChange
		}
		now := d.now()
		j.setState(JobCompleted, now)
		j.EndTime = now
		return nil
	})
	if errors.Is(err, errNoChange) || custody.IsNotFound(err) {
		return nil
	}
	return err
}
