package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"custody"
)

// Job states, as the Batch REST API spells them.
const (
	JobActive      = "active"
	JobDisabling   = "disabling"
	JobDisabled    = "disabled"
	JobEnabling    = "enabling"
	JobTerminating = "terminating"
	JobCompleted   = "completed"
	JobDeleting    = "deleting"
)

// Task states.
const (
	TaskActive    = "active"
	TaskPreparing = "preparing"
	TaskRunning   = "running"
	TaskCompleted = "completed"
)

// Results of a task's run (executionInfo.result).
const (
	TaskSuccess = "success"
	TaskFailure = "failure"
)

// Certificate states.
const (
	CertificateActive       = "active"
	CertificateDeleting     = "deleting"
	CertificateDeleteFailed = "deletefailed"
)

// Record kinds and the field name used in the associated data of sealed
// values (see Ref).
const (
	KindJob         = "job"
	KindTask        = "task"
	KindCertificate = "certificate"
	fieldSpec       = "spec"
	fieldFailure    = "failureMessage"
)

// JobMeta is what is stored in the clear about a job: ids, state, times,
// etag and the pool it runs on (the scheduler needs it without the DEK).
type JobMeta struct {
	ID                          string
	PoolID                      string
	State                       string
	PreviousState               string
	ETag                        string
	CreationTime                time.Time
	LastModified                time.Time
	StateTransitionTime         time.Time
	PreviousStateTransitionTime time.Time
	StartTime                   time.Time
	EndTime                     time.Time
}

// Job is a job with its opened specification.
type Job struct {
	JobMeta
	Spec JobSpec
	// TerminateReason is the reason given when the job was terminated
	// (customer-written, so sealed with the spec).
	TerminateReason string
}

// JobRecord is a job as stored: the clear metadata and the sealed spec.
type JobRecord struct {
	JobMeta
	Sealed []byte
}

// sealedJob is the plaintext of JobRecord.Sealed.
type sealedJob struct {
	Spec            JobSpec `json:"spec"`
	TerminateReason string  `json:"terminateReason,omitempty"`
}

// TaskMeta is what is stored in the clear about a task.
type TaskMeta struct {
	JobID                       string
	ID                          string
	State                       string
	PreviousState               string
	ETag                        string
	CreationTime                time.Time
	LastModified                time.Time
	StateTransitionTime         time.Time
	PreviousStateTransitionTime time.Time
	RetryCount                  int32
	RequeueCount                int32
	StartTime                   time.Time
	EndTime                     time.Time
	// Outcome is how the task's last run went.
	Outcome TaskOutcome
}

// TaskOutcome is what the compute service records about a task's last
// run. The values are service-generated (codes, ids, times), so they are
// stored in the clear and written together with the task's state. The
// failure message can quote the command (a program that could not be
// started), so it is sealed: TaskRecord.SealedFailureMessage, opened into
// Task.FailureMessage.
type TaskOutcome struct {
	// ExitCode is the last run's exit code, nil before any run ended.
	ExitCode *int
	// Result is TaskSuccess or TaskFailure once the task completed.
	Result      string
	FailureCode string
	// PoolID and NodeID are where the task runs or last ran; NodeID is
	// empty after a retry or requeue puts the task back to active.
	PoolID          string
	NodeID          string
	LastRetryTime   time.Time
	LastRequeueTime time.Time
}

// Task is a task with its opened specification.
type Task struct {
	TaskMeta
	Spec TaskSpec
	// FailureMessage is the opened failure message of the last run.
	FailureMessage string
}

// TaskRecord is a task as stored.
type TaskRecord struct {
	TaskMeta
	Sealed []byte
	// SealedFailureMessage is the last run's failure message sealed with
	// the account's DEK (SealTaskFailureMessage), or empty.
	SealedFailureMessage []byte
}

// CertificateMeta is what is stored in the clear about a certificate.
type CertificateMeta struct {
	ThumbprintAlgorithm         string // sha1
	Thumbprint                  string // lower-case hex
	State                       string
	PreviousState               string
	StateTransitionTime         time.Time
	PreviousStateTransitionTime time.Time
	CreationTime                time.Time
}

// Certificate is a certificate with its opened data and password.
type Certificate struct {
	CertificateMeta
	Spec CertificateSpec
}

// CertificateRecord is a certificate as stored.
type CertificateRecord struct {
	CertificateMeta
	Sealed []byte
}

// TaskCounts are the numbers of a job's tasks by state.
type TaskCounts struct {
	Active, Running, Completed, Succeeded, Failed int32
}

// ListOptions select a page of records in id order.
type ListOptions struct {
	// After is the lower-cased id after which the page starts.
	After string
	// Limit is the largest number of records returned.
	Limit int
	// States, if not empty, keeps only records in one of these states.
	States []string
}

// DataStore is the persistence of an account's jobs, tasks and
// certificates. Record ids compare case-insensitively. Not-found errors are
// KindNotFound with the Batch codes (JobNotFound, TaskNotFound,
// CertificateNotFound); ETag mismatches on update are KindPreconditionFailed
// (ConditionNotMet).
type DataStore interface {
	CreateJob(ctx context.Context, account string, j *JobRecord) error // KindConflict JobExists
	Job(ctx context.Context, account, id string) (*JobRecord, error)
	ListJobs(ctx context.Context, account string, o ListOptions) ([]*JobRecord, error)
	// UpdateJob replaces j if its stored etag is still prevETag.
	UpdateJob(ctx context.Context, account string, j *JobRecord, prevETag string) error
	// DeleteJob deletes a job and its tasks in one transaction.
	DeleteJob(ctx context.Context, account, id string) error
	// DeleteJobTasks deletes up to limit of a job's tasks in one short
	// transaction and returns how many it deleted.
	DeleteJobTasks(ctx context.Context, account, jobID string, limit int) (int, error)
	// DeleteAccountTasks deletes up to limit of an account's tasks in one
	// short transaction and returns how many it deleted: 0 once none is
	// left.
	DeleteAccountTasks(ctx context.Context, account string, limit int) (int, error)
	// CompactTaskCounts does the store's upkeep of task counts, if any
	// (RunDeletions calls it every interval).
	CompactTaskCounts(ctx context.Context) error
	// JobsInState lists up to limit (account, job id) pairs of the jobs of
	// every account in a state.
	JobsInState(ctx context.Context, state string, limit int) ([][2]string, error)

	// CreateTasks inserts tasks of one job in one transaction; created[i]
	// is false when a task with that id already exists.
	CreateTasks(ctx context.Context, account string, ts []*TaskRecord) (created []bool, err error)
	Task(ctx context.Context, account, jobID, id string) (*TaskRecord, error)
	ListTasks(ctx context.Context, account, jobID string, o ListOptions) ([]*TaskRecord, error)
	UpdateTask(ctx context.Context, account string, t *TaskRecord, prevETag string) error
	// UpdateTasks writes many tasks in one transaction, each only if its
	// stored etag is still prevETags[i]; updated[i] says whether ts[i] was
	// written (false: it changed or was deleted meanwhile).
	UpdateTasks(ctx context.Context, account string, ts []*TaskRecord, prevETags []string) (updated []bool, err error)
	DeleteTask(ctx context.Context, account, jobID, id string) error
	// TaskStates returns the number of a job's tasks in each state.
	TaskStates(ctx context.Context, account, jobID string) (map[string]int, error)
	// TaskCounts counts a job's tasks by state, and its completed tasks by
	// result: Failed are those whose result is TaskFailure, Succeeded the
	// other completed ones.
	TaskCounts(ctx context.Context, account, jobID string) (TaskCounts, error)

	CreateCertificate(ctx context.Context, account string, c *CertificateRecord) error // KindConflict CertificateExists
	Certificate(ctx context.Context, account, thumbprintAlgorithm, thumbprint string) (*CertificateRecord, error)
	ListCertificates(ctx context.Context, account string, o ListOptions) ([]*CertificateRecord, error)
	UpdateCertificate(ctx context.Context, account string, c *CertificateRecord) error
	DeleteCertificate(ctx context.Context, account, thumbprintAlgorithm, thumbprint string) error

	// DeleteAccountData deletes every job, task and certificate of an
	// account.
	DeleteAccountData(ctx context.Context, account string) error
}

// DEKSource gives the data plane an account and its unwrapped DEK.
// *Service is the implementation; a locked account answers
// AccountKeyInaccessible.
type DEKSource interface {
	DEK(ctx context.Context, account string) (*Account, *DEK, error)
}

// DataService is the batch data plane for jobs, tasks, job schedules and
// certificates.
// Every customer-written field is sealed with the account's DEK before it
// reaches Store; the associated data binds each sealed value to the account
// UID, the record kind, the record id and the field, so a value cannot be
// moved to another record or account. Every method first obtains the DEK,
// so a locked account refuses every call with AccountKeyInaccessible.
type DataService struct {
	Keys  DEKSource
	Store DataStore
	Now   func() time.Time
	// OnStop, if set, is called after a task (taskID) or a whole job
	// (taskID "") was terminated or deleted, so running processes are
	// killed on their nodes.
	OnStop func(account, jobID, taskID string)
	// OnAdd, if set, is called after tasks were added to a job, so the
	// scheduler looks for work at once.
	OnAdd func(account, jobID string)
	// Fence, if set, is asked before each batch of a job deletion
	// (RunDeletions) and each pass of RunJobSchedules whether this replica
	// may still write.
	Fence func(ctx context.Context) error

	// Schedules stores job schedules (jobschedule.go); nil refuses them.
	Schedules JobScheduleStore
	// MinScheduleInterval is the smallest recurrenceInterval and
	// startWindow accepted (default MinScheduleInterval, Azure's minute).
	MinScheduleInterval time.Duration
	// ScheduleTick is how often RunJobSchedules looks for due schedules
	// (default DefaultScheduleTick).
	ScheduleTick time.Duration
	// AutoPools and AutoPoolStore serve auto pools (autopool.go); nil
	// refuses them.
	AutoPools     AutoPools
	AutoPoolStore AutoPoolStore
	// OnJobEnd, if set, is called after a job was terminated (or
	// completed) or deleted, with its opened spec, so its release task
	// runs on the nodes that ran its preparation task. The spec is not
	// kept: the compute service builds the release runs from it at once.
	OnJobEnd func(account string, job *Job, deleted bool)
	// ReleasePending, if set, reports whether a job's release task is to
	// run on some node: a terminated job with one is terminating until
	// FinishTermination.
	ReleasePending func(account, jobID string) bool

	deletions     chan struct{}
	deletionsOnce sync.Once
	kickOnce      sync.Once
	kick          chan struct{}
}

func (d *DataService) ended(account string, j *Job, deleted bool) {
	if d.OnJobEnd != nil && j != nil {
		d.OnJobEnd(account, j, deleted)
	}
}

func (d *DataService) stopped(account, jobID, taskID string) {
	if d.OnStop != nil {
		d.OnStop(account, jobID, taskID)
	}
}

var _ DataDeleter = (*DataService)(nil)

// DeleteAccountData deletes an account's data; it works whatever the state
// of the account's key. Its tasks go first, DeleteJobBatch a transaction
// with a pause between as long as each took (as RunDeletions does), then
// the rest in one transaction: the account is being deleted, and a
// deletion cut short by a crash is finished by the next attempt.
func (d *DataService) DeleteAccountData(ctx context.Context, account string) error {
	err := deleteInBatches(ctx, func() (bool, error) {
		n, err := d.Store.DeleteAccountTasks(ctx, account, DeleteJobBatch)
		return n == 0, err
	})
	if err != nil {
		return err
	}
	return d.Store.DeleteAccountData(ctx, account)
}

// deleteInBatches calls del until it reports done, pausing after each call
// as long as it took, so that other writers (on SQLite, one at a time) get
// the database at least half of the time.
func deleteInBatches(ctx context.Context, del func() (done bool, err error)) error {
	for {
		start := time.Now()
		done, err := del()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(max(time.Since(start), time.Millisecond)):
		}
	}
}

func (d *DataService) now() time.Time {
	if d.Now != nil {
		return d.Now().UTC()
	}
	return time.Now().UTC()
}

var etagLast atomic.Int64

// newETag returns an ETag in Azure Batch's style (0x8D...), strictly
// increasing within the process.
func newETag(now time.Time) string {
	for {
		last := etagLast.Load()
		n := now.UnixNano()
		if n <= last {
			n = last + 1
		}
		if etagLast.CompareAndSwap(last, n) {
			return fmt.Sprintf("0x%X", n)
		}
	}
}

func jobRef(id string) Ref { return Ref{Kind: KindJob, ID: strings.ToLower(id), Field: fieldSpec} }

func taskRef(jobID, id string) Ref {
	return Ref{Kind: KindTask, ID: strings.ToLower(jobID) + "/" + strings.ToLower(id), Field: fieldSpec}
}

func taskFailureRef(jobID, id string) Ref {
	r := taskRef(jobID, id)
	r.Field = fieldFailure
	return r
}

// SealTaskFailureMessage seals a task's failure message for
// TaskRecord.SealedFailureMessage; an empty message stays empty.
func SealTaskFailureMessage(a *Account, dek *DEK, jobID, taskID, msg string) []byte {
	if msg == "" {
		return nil
	}
	return dek.Seal(a.UID, taskFailureRef(jobID, taskID), []byte(msg))
}

// JobRef is the Ref of a job's sealed spec; idKey is its lower-cased id.
func JobRef(idKey string) Ref { return jobRef(idKey) }

// TaskRef is the Ref of a task's sealed spec.
func TaskRef(jobID, id string) Ref { return taskRef(jobID, id) }

// TaskFailureRef is the Ref of a task's sealed failure message.
func TaskFailureRef(jobID, id string) Ref { return taskFailureRef(jobID, id) }

// CertificateRef is the Ref of a certificate's sealed data; key is
// "{thumbprintAlgorithm}-{thumbprint}", lower-cased.
func CertificateRef(key string) Ref {
	return Ref{Kind: KindCertificate, ID: strings.ToLower(key), Field: fieldSpec}
}

func certRef(alg, tp string) Ref {
	return Ref{Kind: KindCertificate, ID: strings.ToLower(alg) + "-" + strings.ToLower(tp), Field: fieldSpec}
}

// seal marshals v and seals it for ref.
func seal(a *Account, dek *DEK, ref Ref, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, custody.Internal(err, "encode %s %s", ref.Kind, ref.ID)
	}
	return dek.Seal(a.UID, ref, b), nil
}

// open opens a sealed value for ref into v.
func open(a *Account, dek *DEK, ref Ref, sealed []byte, v any) error {
	b, err := dek.Open(a.UID, ref, sealed)
	if err != nil {
		return custody.Internal(err, "The stored %s %s of account %q could not be opened with the account's key; the record was altered or moved.", ref.Kind, ref.ID, a.Name)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return custody.Internal(err, "decode %s %s", ref.Kind, ref.ID)
	}
	return nil
}

// OpenJob opens a job record already read from the store (ListJobs) with
// the account's DEK, without reading it again.
func (d *DataService) OpenJob(a *Account, dek *DEK, r *JobRecord) (*Job, error) {
	return d.openJob(a, dek, r)
}

func (d *DataService) openJob(a *Account, dek *DEK, r *JobRecord) (*Job, error) {
	var s sealedJob
	if err := open(a, dek, jobRef(r.ID), r.Sealed, &s); err != nil {
		return nil, err
	}
	return &Job{JobMeta: r.JobMeta, Spec: s.Spec, TerminateReason: s.TerminateReason}, nil
}

func (d *DataService) sealJob(a *Account, dek *DEK, j *Job) (*JobRecord, error) {
	b, err := seal(a, dek, jobRef(j.ID), sealedJob{Spec: j.Spec, TerminateReason: j.TerminateReason})
	if err != nil {
		return nil, err
	}
	return &JobRecord{JobMeta: j.JobMeta, Sealed: b}, nil
}

func (d *DataService) openTask(a *Account, dek *DEK, r *TaskRecord) (*Task, error) {
	t := &Task{TaskMeta: r.TaskMeta}
	if err := open(a, dek, taskRef(r.JobID, r.ID), r.Sealed, &t.Spec); err != nil {
		return nil, err
	}
	if len(r.SealedFailureMessage) > 0 {
		ref := taskFailureRef(r.JobID, r.ID)
		b, err := dek.Open(a.UID, ref, r.SealedFailureMessage)
		if err != nil {
			return nil, custody.Internal(err, "The stored %s %s of account %q could not be opened with the account's key; the record was altered or moved.", ref.Field, ref.ID, a.Name)
		}
		t.FailureMessage = string(b)
	}
	return t, nil
}

func (d *DataService) sealTask(a *Account, dek *DEK, t *Task) (*TaskRecord, error) {
	b, err := seal(a, dek, taskRef(t.JobID, t.ID), t.Spec)
	if err != nil {
		return nil, err
	}
	return &TaskRecord{TaskMeta: t.TaskMeta, Sealed: b, SealedFailureMessage: SealTaskFailureMessage(a, dek, t.JobID, t.ID, t.FailureMessage)}, nil
}

// ---- jobs ----

// AddJob creates a job in state active. Errors: invalid spec (KindInvalid),
// JobExists (KindConflict), AccountKeyInaccessible.
func (d *DataService) AddJob(ctx context.Context, account, id string, spec JobSpec) (*Job, error) {
	if err := ValidateJobID(id); err != nil {
		return nil, err
	}
	if err := validateJobSpec(id, &spec); err != nil {
		return nil, err
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	if d.Schedules != nil {
		if _, err := d.Schedules.JobSchedule(ctx, a.Name, id); err == nil {
			return nil, custody.Errorf(custody.KindConflict, "JobScheduleWithSameIdExists", "A job schedule with the specified job id exists: job schedule %q. Job and job schedule cannot have the same id; use another id.", id)
		} else if !custody.IsNotFound(err) {
			return nil, err
		}
	}
	if err := d.checkAutoPool(ctx, a.Name, "Job "+id, &spec.PoolInfo, false); err != nil {
		return nil, err
	}
	return d.createJob(ctx, a, dek, id, spec, "")
}

// createJob stores a new active job with a validated spec, within the
// account's quota of active jobs and schedules, and creates its auto pool
// if it has one (scheduleID names the schedule that creates it, if any).
func (d *DataService) createJob(ctx context.Context, a *Account, dek *DEK, id string, spec JobSpec, scheduleID string) (*Job, error) {
	jobQuota.Lock()
	defer jobQuota.Unlock()
	if err := d.checkJobQuota(ctx, a); err != nil {
		return nil, err
	}
	poolID, bound := spec.PoolInfo.PoolID, func(error) {}
	if ap := spec.PoolInfo.AutoPoolSpecification; ap != nil {
		if d.AutoPools == nil || d.AutoPoolStore == nil {
			return nil, invalid("AutoPoolNotSupported", "poolInfo.autoPoolSpecification", "Job %s: auto pools are not available on this server; create a pool and name it in poolInfo.poolId.", id)
		}
		var err error
		if poolID, bound, err = d.autoPool(ctx, a.Name, id, scheduleID, ap); err != nil {
			return nil, err
		}
	}
	now := d.now()
	j := &Job{JobMeta: JobMeta{
		ID: id, PoolID: poolID, State: JobActive, ETag: newETag(now),
		CreationTime: now, LastModified: now, StateTransitionTime: now, StartTime: now,
	}, Spec: spec}
	rec, err := d.sealJob(a, dek, j)
	if err != nil {
		bound(err)
		return nil, err
	}
	err = d.Store.CreateJob(ctx, a.Name, rec)
	bound(err)
	if err != nil {
		return nil, err
	}
	if err := d.addManagerTask(ctx, a, dek, j); err != nil {
		return nil, err
	}
	return j, nil
}

// GetJob returns a job (JobNotFound).
func (d *DataService) GetJob(ctx context.Context, account, id string) (*Job, error) {
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	r, err := d.Store.Job(ctx, a.Name, id)
	if err != nil {
		return nil, err
	}
	return d.openJob(a, dek, r)
}

// ListQuery is a list request: an OData $filter over the clear properties
// (state, id, ...), the page size, and the continuation token of the
// previous page.
type ListQuery struct {
	Filter     string
	MaxResults int
	SkipToken  string
}

// MaxPageSize is the largest page a list answers.
const MaxPageSize = 1000

func (q ListQuery) limit() int {
	if q.MaxResults <= 0 || q.MaxResults > MaxPageSize {
		return MaxPageSize
	}
	return q.MaxResults
}

// listScanPages bounds the records one list request reads to fill a page
// whose $filter the store cannot select by index (anything but state): a
// request that reads this many pages' worth without filling its page
// answers with the matches found so far and a skip token after the last
// record read, as Azure answers short pages with an odata.nextLink. So no
// request reads a million tasks to find a few.
const listScanPages = 10

// listPage pages through fetch, keeping records that match f, until it has
// a page or has read listScanPages pages' worth; it returns the page and the
// next skip token ("" at the end).
func listPage[R any](ctx context.Context, q ListQuery, f *Filter, key func(R) string, props func(R) map[string]string,
	fetch func(o ListOptions) ([]R, error)) ([]R, string, error) {
	limit := q.limit()
	o := ListOptions{After: strings.ToLower(q.SkipToken), Limit: limit + 1, States: f.States()}
	var out []R
	read := 0
	for {
		rs, err := fetch(o)
		if err != nil {
			return nil, "", err
		}
		for _, r := range rs {
			if !f.Match(props(r)) {
				continue
			}
			if len(out) == limit {
				return out, key(out[len(out)-1]), nil
			}
			out = append(out, r)
		}
		if len(rs) < o.Limit {
			return out, "", nil
		}
		o.After = key(rs[len(rs)-1])
		if read += len(rs); read >= listScanPages*o.Limit {
			return out, o.After, nil
		}
	}
}

func jobProps(r *JobRecord) map[string]string {
	return map[string]string{"id": r.ID, "state": r.State, "previousstate": r.PreviousState, "poolinfo/poolid": r.PoolID, "executioninfo/poolid": r.PoolID, "etag": r.ETag}
}

// ListJobs returns a page of jobs matching q.Filter and the skip token of
// the next page ("" if none).
func (d *DataService) ListJobs(ctx context.Context, account string, q ListQuery) ([]*Job, string, error) {
	f, err := ParseFilter(q.Filter, "state", "id", "previousState", "poolInfo/poolId", "executionInfo/poolId", "eTag")
	if err != nil {
		return nil, "", err
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, "", err
	}
	rs, next, err := listPage(ctx, q, f, func(r *JobRecord) string { return strings.ToLower(r.ID) }, jobProps,
		func(o ListOptions) ([]*JobRecord, error) { return d.Store.ListJobs(ctx, a.Name, o) })
	if err != nil {
		return nil, "", err
	}
	out := make([]*Job, 0, len(rs))
	for _, r := range rs {
		j, err := d.openJob(a, dek, r)
		if err != nil {
			return nil, "", err
		}
		out = append(out, j)
	}
	return out, next, nil
}

// changeJob reads a job, applies fn, and writes it back if the etag did not
// change in between. With ifMatch set, a different etag is
// ConditionNotMet; without, a concurrent change is retried.
func (d *DataService) changeJob(ctx context.Context, account, id, ifMatch string, fn func(j *Job) error) (*Job, error) {
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	var j *Job
	err = retryChange(ifMatch, func() error {
		r, err := d.Store.Job(ctx, a.Name, id)
		if err != nil {
			return err
		}
		if err := checkIfMatch(ifMatch, r.ETag, "job", id); err != nil {
			return err
		}
		if j, err = d.openJob(a, dek, r); err != nil {
			return err
		}
		if err := fn(j); err != nil {
			return err
		}
		now := d.now()
		j.ETag, j.LastModified = newETag(now), now
		nr, err := d.sealJob(a, dek, j)
		if err != nil {
			return err
		}
		return d.Store.UpdateJob(ctx, a.Name, nr, r.ETag)
	})
	if err != nil {
		return nil, err
	}
	return j, nil
}

// retryChange runs a read-modify-write attempt again when it lost a race
// with another writer (the etag it read changed), up to five times. With an
// If-Match from the caller the first conflict is the answer.
func retryChange(ifMatch string, attempt func() error) error {
	for i := 0; ; i++ {
		err := attempt()
		if custody.ErrorKind(err) == custody.KindPreconditionFailed && ifMatch == "" && i < 5 {
			continue
		}
		return err
	}
}

func checkIfMatch(ifMatch, etag, kind, id string) error {
	if ifMatch == "" || ifMatch == "*" || strings.Trim(ifMatch, `"`) == etag {
		return nil
	}
	return custody.Errorf(custody.KindPreconditionFailed, "ConditionNotMet",
		"The condition specified using HTTP conditional header(s) is not met: %s %q has ETag %s, not %s. Read it again and retry with the current ETag.", kind, id, etag, ifMatch)
}

func (j *Job) setState(state string, now time.Time) {
	j.PreviousState, j.PreviousStateTransitionTime = j.State, j.StateTransitionTime
	j.State, j.StateTransitionTime = state, now
}

// jobWritable refuses changes to completed and deleting jobs.
func jobWritable(j *Job) error {
	switch j.State {
	case JobCompleted:
		return custody.Errorf(custody.KindConflict, "JobCompleted", "The specified job is already in a completed state: job %q was terminated or completed and cannot be changed. Create a new job.", j.ID)
	case JobDeleting:
		return custody.Errorf(custody.KindConflict, "JobBeingDeleted", "The specified job has been marked for deletion and is being garbage collected: job %q cannot be changed.", j.ID)
	case JobTerminating:
		return custody.Errorf(custody.KindConflict, "JobBeingTerminated", "The specified job is being terminated: job %q waits for its job release tasks and then completes; it cannot be changed.", j.ID)
	}
	return nil
}

// ReplaceJob replaces the updatable properties of a job (PUT): priority,
// maxParallelTasks, allowTaskPreemption, onAllTasksComplete, constraints,
// poolInfo and metadata. Properties not given return to their defaults.
func (d *DataService) ReplaceJob(ctx context.Context, account, id, ifMatch string, spec JobSpec) (*Job, error) {
	u := JobUpdate{
		Priority: spec.Priority, MaxParallelTasks: spec.MaxParallelTasks, AllowTaskPreemption: spec.AllowTaskPreemption,
		OnAllTasksComplete: spec.OnAllTasksComplete, Constraints: spec.Constraints, PoolInfo: &spec.PoolInfo, Metadata: spec.Metadata,
	}
	if err := validateJobUpdate(id, &u, true); err != nil {
		return nil, err
	}
	return d.changeJob(ctx, account, id, ifMatch, func(j *Job) error {
		if err := jobWritable(j); err != nil {
			return err
		}
		s := &j.Spec
		s.Priority, s.MaxParallelTasks, s.AllowTaskPreemption = u.Priority, u.MaxParallelTasks, u.AllowTaskPreemption
		s.OnAllTasksComplete, s.Constraints, s.PoolInfo, s.Metadata = u.OnAllTasksComplete, u.Constraints, *u.PoolInfo, u.Metadata
		j.PoolID = s.PoolInfo.PoolID
		return nil
	})
}

// UpdateJob merges u into a job (PATCH): properties not given keep their
// values.
func (d *DataService) UpdateJob(ctx context.Context, account, id, ifMatch string, u JobUpdate) (*Job, error) {
	if err := validateJobUpdate(id, &u, false); err != nil {
		return nil, err
	}
	return d.changeJob(ctx, account, id, ifMatch, func(j *Job) error {
		if err := jobWritable(j); err != nil {
			return err
		}
		s := &j.Spec
		if u.Priority != nil {
			s.Priority = u.Priority
		}
		if u.MaxParallelTasks != nil {
			s.MaxParallelTasks = u.MaxParallelTasks
		}
		if u.AllowTaskPreemption != nil {
			s.AllowTaskPreemption = u.AllowTaskPreemption
		}
		if u.OnAllTasksComplete != nil {
			s.OnAllTasksComplete = u.OnAllTasksComplete
		}
		if u.Constraints != nil {
			s.Constraints = u.Constraints
		}
		if u.PoolInfo != nil {
			s.PoolInfo = *u.PoolInfo
			j.PoolID = u.PoolInfo.PoolID
		}
		if u.Metadata != nil {
			s.Metadata = u.Metadata
		}
		if u.NetworkConfiguration != nil {
			s.NetworkConfiguration = u.NetworkConfiguration
		}
		return nil
	})
}

// DisableJob disables an active job; disableTasks is requeue, terminate
// or wait. Its tasks stay where they are (no task runs before pools exist).
func (d *DataService) DisableJob(ctx context.Context, account, id, ifMatch, disableTasks string) (*Job, error) {
	switch disableTasks {
	case "requeue", "terminate", "wait":
	default:
		return nil, invalid("InvalidPropertyValue", "disableTasks", "disableTasks %q is not valid for job %q: use requeue, terminate or wait.", disableTasks, id)
	}
	return d.changeJob(ctx, account, id, ifMatch, func(j *Job) error {
		if err := jobWritable(j); err != nil {
			return err
		}
		if j.State != JobActive {
			return custody.Errorf(custody.KindConflict, "JobNotActive", "Job %q is %s, not active, so it cannot be disabled. Enable it first if you mean to disable it again.", j.ID, j.State)
		}
		j.setState(JobDisabled, d.now())
		return nil
	})
}

// EnableJob enables a disabled job.
func (d *DataService) EnableJob(ctx context.Context, account, id, ifMatch string) (*Job, error) {
	return d.changeJob(ctx, account, id, ifMatch, func(j *Job) error {
		if err := jobWritable(j); err != nil {
			return err
		}
		if j.State != JobDisabled {
			return custody.Errorf(custody.KindConflict, "JobNotDisabled", "Job %q is %s, not disabled, so it cannot be enabled.", j.ID, j.State)
		}
		j.setState(JobActive, d.now())
		return nil
	})
}

// TerminateJob completes an active or disabled job with a reason (default
// UserTerminate).
func (d *DataService) TerminateJob(ctx context.Context, account, id, ifMatch, reason string) (*Job, error) {
	if len(reason) > 1024 {
		return nil, invalid("InvalidPropertyValue", "terminateReason", "The terminateReason of job %q is %d characters long; the limit is 1024.", id, len(reason))
	}
	if reason == "" {
		reason = "UserTerminate"
	}
	j, err := d.changeJob(ctx, account, id, ifMatch, func(j *Job) error {
		if err := jobWritable(j); err != nil {
			return err
		}
		now := d.now()
		j.TerminateReason = reason
		if d.releasePending(account, j) {
			// Completed once its release tasks ran (FinishTermination).
			j.setState(JobTerminating, now)
			return nil
		}
		j.setState(JobCompleted, now)
		j.EndTime = now
		return nil
	})
	if err == nil {
		d.stopped(account, id, "")
		d.ended(account, j, false)
	}
	return j, err
}

// DeleteJobBatch is the number of tasks deleted in one transaction. A job
// with no more tasks than this is deleted at once, in one transaction; a
// larger one goes to state deleting and its tasks are deleted a batch at a
// time in the background (RunDeletions), so no transaction holds the
// database's write lock long and other accounts' writes go on between
// batches.
const DeleteJobBatch = 1000

// DeleteJob deletes a job and its tasks: at once for a job of at most
// DeleteJobBatch tasks, otherwise the job goes to state deleting (as in
// Azure; it accepts no more changes) and is gone once RunDeletions has
// deleted its tasks. Deleting a job already being deleted changes nothing.
func (d *DataService) DeleteJob(ctx context.Context, account, id, ifMatch string) error {
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return err
	}
	r, err := d.Store.Job(ctx, a.Name, id)
	if err != nil {
		return err
	}
	if err := checkIfMatch(ifMatch, r.ETag, "job", id); err != nil {
		return err
	}
	if r.State == JobDeleting {
		d.kickDeletions()
		return nil
	}
	j, err := d.openJob(a, dek, r)
	if err != nil {
		return err
	}
	states, err := d.Store.TaskStates(ctx, a.Name, id)
	if err != nil {
		return err
	}
	tasks := 0
	for _, n := range states {
		tasks += n
	}
	if tasks <= DeleteJobBatch {
		if err := d.Store.DeleteJob(ctx, a.Name, id); err != nil {
			return err
		}
		d.stopped(a.Name, id, "")
		d.ended(a.Name, j, true)
		return nil
	}
	for attempt := 0; r.State != JobDeleting; attempt++ {
		now := d.now()
		prev := r.ETag
		r.PreviousState, r.PreviousStateTransitionTime = r.State, r.StateTransitionTime
		r.State, r.StateTransitionTime, r.LastModified, r.ETag = JobDeleting, now, now, newETag(now)
		err := d.Store.UpdateJob(ctx, a.Name, r, prev)
		if err == nil {
			break
		}
		if custody.ErrorKind(err) != custody.KindPreconditionFailed || ifMatch != "" || attempt == 4 {
			return err
		}
		// Changed meanwhile: read it again.
		if r, err = d.Store.Job(ctx, a.Name, id); err != nil {
			return err
		}
	}
	d.stopped(a.Name, id, "")
	d.ended(a.Name, j, true)
	d.kickDeletions()
	return nil
}

func (d *DataService) deletionKicks() chan struct{} {
	d.deletionsOnce.Do(func() { d.deletions = make(chan struct{}, 1) })
	return d.deletions
}

func (d *DataService) kickDeletions() {
	select {
	case d.deletionKicks() <- struct{}{}:
	default:
	}
}

// RunDeletions deletes the jobs in state deleting, a batch of
// DeleteJobBatch tasks per transaction, until ctx is done: at once when
// DeleteJob asks, and every interval for jobs left deleting by a previous
// process. Every interval it also has the store compact task counts. After each batch it pauses as long as the batch took, so that
// other writers (on SQLite, one at a time) get the database at least half
// of the time.
func (d *DataService) RunDeletions(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := d.deleteJobs(ctx); err != nil && ctx.Err() == nil {
			log.Warn("batch: delete jobs", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.Store.CompactTaskCounts(ctx); err != nil && ctx.Err() == nil {
				log.Warn("batch: compact task counts", "err", err)
			}
		case <-d.deletionKicks():
		}
	}
}

// deleteJobs deletes every job in state deleting.
func (d *DataService) deleteJobs(ctx context.Context) error {
	for {
		jobs, err := d.Store.JobsInState(ctx, JobDeleting, 100)
		if err != nil || len(jobs) == 0 {
			return err
		}
		for _, j := range jobs {
			if err := d.deleteJob(ctx, j[0], j[1]); err != nil {
				return err
			}
		}
	}
}

func (d *DataService) deleteJob(ctx context.Context, account, id string) error {
	err := deleteInBatches(ctx, func() (bool, error) {
		if d.Fence != nil {
			if err := d.Fence(ctx); err != nil {
				return false, err
			}
		}
		n, err := d.Store.DeleteJobTasks(ctx, account, id, DeleteJobBatch)
		return n < DeleteJobBatch, err
	})
	if err != nil {
		return err
	}
	if err := d.Store.DeleteJob(ctx, account, id); err != nil && !custody.IsNotFound(err) {
		return err
	}
	return nil
}

// JobTaskCounts counts a job's tasks by state.
func (d *DataService) JobTaskCounts(ctx context.Context, account, id string) (TaskCounts, error) {
	a, _, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return TaskCounts{}, err
	}
	if _, err := d.Store.Job(ctx, a.Name, id); err != nil {
		return TaskCounts{}, err
	}
	return d.Store.TaskCounts(ctx, a.Name, id)
}

// ---- tasks ----

// NewTask is one task of an add-collection request.
type NewTask struct {
	ID   string
	Spec TaskSpec
}

// TaskAddResult is the outcome of adding one task of a collection: Task on
// success, Err otherwise (a client error unless it is KindInternal).
type TaskAddResult struct {
	TaskID string
	Task   *Task
	Err    error
}

// MaxTasksPerCollection is the largest add-collection request.
const MaxTasksPerCollection = 100

// jobAcceptsTasks refuses tasks for completed and deleting jobs.
func jobAcceptsTasks(r *JobRecord) error {
	switch r.State {
	case JobCompleted, JobTerminating:
		return custody.Errorf(custody.KindConflict, "JobCompleted", "The specified job is already in a completed state: job %q accepts no new tasks. Create a new job.", r.ID)
	case JobDeleting:
		return custody.Errorf(custody.KindConflict, "JobBeingDeleted", "The specified job has been marked for deletion: job %q accepts no new tasks.", r.ID)
	}
	return nil
}

// AddTask adds one task to a job, in state active.
func (d *DataService) AddTask(ctx context.Context, account, jobID, id string, spec TaskSpec) (*Task, error) {
	res, err := d.AddTasks(ctx, account, jobID, []NewTask{{ID: id, Spec: spec}})
	if err != nil {
		return nil, err
	}
	if res[0].Err != nil {
		return nil, res[0].Err
	}
	return res[0].Task, nil
}

// AddTasks adds up to MaxTasksPerCollection tasks to a job in one
// transaction. Each task succeeds or fails on its own (invalid, TaskExists);
// an error is returned only when the whole request fails (job not found or
// completed, too many tasks, locked account).
func (d *DataService) AddTasks(ctx context.Context, account, jobID string, tasks []NewTask) ([]TaskAddResult, error) {
	if len(tasks) > MaxTasksPerCollection {
		return nil, custody.Errorf(custody.KindTooLarge, "RequestBodyTooLarge", "The request adds %d tasks to job %q; at most %d tasks can be added per request. Split the collection.", len(tasks), jobID, MaxTasksPerCollection)
	}
	if len(tasks) == 0 {
		return nil, invalid("MissingRequiredProperty", "value", "The task collection for job %q is empty; give 1 to %d tasks in 'value'.", jobID, MaxTasksPerCollection)
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	jr, err := d.Store.Job(ctx, a.Name, jobID)
	if err != nil {
		return nil, err
	}
	if err := jobAcceptsTasks(jr); err != nil {
		return nil, err
	}
	job, err := d.openJob(a, dek, jr)
	if err != nil {
		return nil, err
	}
	usesDeps := job.Spec.UsesTaskDependencies != nil && *job.Spec.UsesTaskDependencies
	now := d.now()
	results := make([]TaskAddResult, len(tasks))
	seen := map[string]bool{}
	var recs []*TaskRecord
	var idx []int
	for i, nt := range tasks {
		results[i].TaskID = nt.ID
		if err := ValidateTaskID(nt.ID); err != nil {
			results[i].Err = err
			continue
		}
		spec := nt.Spec
		if err := validateTaskSpec(nt.ID, &spec, usesDeps); err != nil {
			results[i].Err = err
			continue
		}
		if err := validateTaskForJob(nt.ID, &spec, job); err != nil {
			results[i].Err = err
			continue
		}
		if k := strings.ToLower(nt.ID); seen[k] {
			results[i].Err = taskExists(nt.ID, jobID)
			continue
		} else {
			seen[k] = true
		}
		t := &Task{TaskMeta: TaskMeta{JobID: jr.ID, ID: nt.ID, State: TaskActive, ETag: newETag(now),
			CreationTime: now, LastModified: now, StateTransitionTime: now}, Spec: spec}
		rec, err := d.sealTask(a, dek, t)
		if err != nil {
			return nil, err
		}
		results[i].Task = t
		recs = append(recs, rec)
		idx = append(idx, i)
	}
	if len(recs) == 0 {
		return results, nil
	}
	created, err := d.Store.CreateTasks(ctx, a.Name, recs)
	if err != nil {
		return nil, err
	}
	for k, i := range idx {
		if !created[k] {
			results[i].Task, results[i].Err = nil, taskExists(tasks[i].ID, jobID)
		}
	}
	if d.OnAdd != nil {
		d.OnAdd(account, jobID)
	}
	return results, nil
}

func taskExists(id, jobID string) error {
	return custody.Errorf(custody.KindConflict, "TaskExists", "The specified task already exists: job %q already has a task %q (task ids compare case-insensitively). Use another id.", jobID, id)
}

// GetTask returns a task (JobNotFound, TaskNotFound).
func (d *DataService) GetTask(ctx context.Context, account, jobID, id string) (*Task, error) {
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	r, err := d.Store.Task(ctx, a.Name, jobID, id)
	if err != nil {
		if custody.IsNotFound(err) {
			if _, jerr := d.Store.Job(ctx, a.Name, jobID); jerr != nil {
				return nil, jerr
			}
		}
		return nil, err
	}
	return d.openTask(a, dek, r)
}

func taskProps(r *TaskRecord) map[string]string {
	return map[string]string{"id": r.ID, "state": r.State, "previousstate": r.PreviousState, "etag": r.ETag}
}

// ListTasks returns a page of a job's tasks.
func (d *DataService) ListTasks(ctx context.Context, account, jobID string, q ListQuery) ([]*Task, string, error) {
	f, err := ParseFilter(q.Filter, "state", "id", "previousState", "eTag")
	if err != nil {
		return nil, "", err
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, "", err
	}
	if _, err := d.Store.Job(ctx, a.Name, jobID); err != nil {
		return nil, "", err
	}
	rs, next, err := listPage(ctx, q, f, func(r *TaskRecord) string { return strings.ToLower(r.ID) }, taskProps,
		func(o ListOptions) ([]*TaskRecord, error) { return d.Store.ListTasks(ctx, a.Name, jobID, o) })
	if err != nil {
		return nil, "", err
	}
	out := make([]*Task, 0, len(rs))
	for _, r := range rs {
		t, err := d.openTask(a, dek, r)
		if err != nil {
			return nil, "", err
		}
		out = append(out, t)
	}
	return out, next, nil
}

func (d *DataService) changeTask(ctx context.Context, account, jobID, id, ifMatch string, fn func(t *Task) error) (*Task, error) {
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	var t *Task
	err = retryChange(ifMatch, func() error {
		r, err := d.Store.Task(ctx, a.Name, jobID, id)
		if err != nil {
			if custody.IsNotFound(err) {
				if _, jerr := d.Store.Job(ctx, a.Name, jobID); jerr != nil {
					return jerr
				}
			}
			return err
		}
		if err := checkIfMatch(ifMatch, r.ETag, "task", id); err != nil {
			return err
		}
		if t, err = d.openTask(a, dek, r); err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
		now := d.now()
		t.ETag, t.LastModified = newETag(now), now
		nr, err := d.sealTask(a, dek, t)
		if err != nil {
			return err
		}
		return d.Store.UpdateTask(ctx, a.Name, nr, r.ETag)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func taskCompleted(t *Task) error {
	if t.State == TaskCompleted {
		return custody.Errorf(custody.KindConflict, "TaskCompleted", "The specified task is already completed: task %q of job %q cannot be changed.", t.ID, t.JobID)
	}
	return nil
}

// ReplaceTask replaces a task's constraints (the only updatable property).
func (d *DataService) ReplaceTask(ctx context.Context, account, jobID, id, ifMatch string, c *TaskConstraints) (*Task, error) {
	if c != nil {
		if err := validateTaskConstraints("task "+id, "constraints", c); err != nil {
			return nil, err
		}
	}
	return d.changeTask(ctx, account, jobID, id, ifMatch, func(t *Task) error {
		if err := taskCompleted(t); err != nil {
			return err
		}
		t.Spec.Constraints = c
		return nil
	})
}

// TerminateTask completes an active or running task.
func (d *DataService) TerminateTask(ctx context.Context, account, jobID, id, ifMatch string) (*Task, error) {
	t, err := d.changeTask(ctx, account, jobID, id, ifMatch, func(t *Task) error {
		if err := taskCompleted(t); err != nil {
			return err
		}
		now := d.now()
		t.PreviousState, t.PreviousStateTransitionTime = t.State, t.StateTransitionTime
		t.State, t.StateTransitionTime, t.EndTime = TaskCompleted, now, now
		// As in Azure, a terminated task has failed (TaskEnded): it counts
		// as failed and blocks the tasks that depend on it.
		t.Outcome.Result, t.Outcome.FailureCode, t.FailureMessage = TaskFailure, "TaskEnded", "The task was terminated."
		return nil
	})
	if err == nil {
		d.stopped(account, jobID, id)
	}
	return t, err
}

// DeleteTask deletes a task.
func (d *DataService) DeleteTask(ctx context.Context, account, jobID, id, ifMatch string) error {
	a, _, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return err
	}
	r, err := d.Store.Task(ctx, a.Name, jobID, id)
	if err != nil {
		if custody.IsNotFound(err) {
			if _, jerr := d.Store.Job(ctx, a.Name, jobID); jerr != nil {
				return jerr
			}
		}
		return err
	}
	if err := checkIfMatch(ifMatch, r.ETag, "task", id); err != nil {
		return err
	}
	if err := d.Store.DeleteTask(ctx, a.Name, jobID, id); err != nil {
		return err
	}
	d.stopped(a.Name, jobID, id)
	return nil
}

// ---- certificates ----

// AddCertificate adds a certificate (deprecated in Azure Batch, kept for
// compatibility). Its data and password are sealed.
func (d *DataService) AddCertificate(ctx context.Context, account, alg, thumbprint string, spec CertificateSpec) (*Certificate, error) {
	alg, thumbprint, err := normalizeThumbprint(alg, thumbprint)
	if err != nil {
		return nil, err
	}
	if err := validateCertificate(thumbprint, &spec); err != nil {
		return nil, err
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	now := d.now()
	c := &Certificate{CertificateMeta: CertificateMeta{ThumbprintAlgorithm: alg, Thumbprint: thumbprint, State: CertificateActive,
		StateTransitionTime: now, CreationTime: now}, Spec: spec}
	b, err := seal(a, dek, certRef(alg, thumbprint), spec)
	if err != nil {
		return nil, err
	}
	if err := d.Store.CreateCertificate(ctx, a.Name, &CertificateRecord{CertificateMeta: c.CertificateMeta, Sealed: b}); err != nil {
		return nil, err
	}
	return c, nil
}

func (d *DataService) openCert(a *Account, dek *DEK, r *CertificateRecord) (*Certificate, error) {
	c := &Certificate{CertificateMeta: r.CertificateMeta}
	if err := open(a, dek, certRef(r.ThumbprintAlgorithm, r.Thumbprint), r.Sealed, &c.Spec); err != nil {
		return nil, err
	}
	return c, nil
}

// GetCertificate returns a certificate (CertificateNotFound).
func (d *DataService) GetCertificate(ctx context.Context, account, alg, thumbprint string) (*Certificate, error) {
	alg, thumbprint, err := normalizeThumbprint(alg, thumbprint)
	if err != nil {
		return nil, err
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	r, err := d.Store.Certificate(ctx, a.Name, alg, thumbprint)
	if err != nil {
		return nil, err
	}
	return d.openCert(a, dek, r)
}

// ListCertificates returns a page of certificates.
func (d *DataService) ListCertificates(ctx context.Context, account string, q ListQuery) ([]*Certificate, string, error) {
	f, err := ParseFilter(q.Filter, "state", "thumbprint", "thumbprintAlgorithm", "previousState")
	if err != nil {
		return nil, "", err
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, "", err
	}
	key := func(r *CertificateRecord) string { return r.ThumbprintAlgorithm + "-" + r.Thumbprint }
	props := func(r *CertificateRecord) map[string]string {
		return map[string]string{"state": r.State, "thumbprint": r.Thumbprint, "thumbprintalgorithm": r.ThumbprintAlgorithm, "previousstate": r.PreviousState}
	}
	rs, next, err := listPage(ctx, q, f, key, props,
		func(o ListOptions) ([]*CertificateRecord, error) { return d.Store.ListCertificates(ctx, a.Name, o) })
	if err != nil {
		return nil, "", err
	}
	out := make([]*Certificate, 0, len(rs))
	for _, r := range rs {
		c, err := d.openCert(a, dek, r)
		if err != nil {
			return nil, "", err
		}
		out = append(out, c)
	}
	return out, next, nil
}

// DeleteCertificate deletes a certificate: it goes to state deleting and,
// as no pool can be using it, is removed at once.
func (d *DataService) DeleteCertificate(ctx context.Context, account, alg, thumbprint string) error {
	alg, thumbprint, err := normalizeThumbprint(alg, thumbprint)
	if err != nil {
		return err
	}
	a, _, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return err
	}
	r, err := d.Store.Certificate(ctx, a.Name, alg, thumbprint)
	if err != nil {
		return err
	}
	now := d.now()
	r.PreviousState, r.PreviousStateTransitionTime = r.State, r.StateTransitionTime
	r.State, r.StateTransitionTime = CertificateDeleting, now
	if err := d.Store.UpdateCertificate(ctx, a.Name, r); err != nil {
		return err
	}
	return d.Store.DeleteCertificate(ctx, a.Name, alg, thumbprint)
}
