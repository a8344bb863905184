package batch

import (
	"context"
	"strconv"
	"strings"
	"time"

	"custody"
)

// Job schedule states, as the Batch REST API spells them.
const (
	ScheduleActive      = "active"
	ScheduleCompleted   = "completed"
	ScheduleDisabled    = "disabled"
	ScheduleTerminating = "terminating"
	ScheduleDeleting    = "deleting"
)

// KindJobSchedule is the record kind of job schedules in the associated
// data of sealed values.
const KindJobSchedule = "jobschedule"

// MinScheduleInterval is Azure's smallest recurrenceInterval and
// startWindow.
const MinScheduleInterval = time.Minute

// Schedule says when a job schedule creates jobs (JobScheduleConfiguration).
type Schedule struct {
	DoNotRunUntil      *time.Time `json:"doNotRunUntil,omitempty"`
	DoNotRunAfter      *time.Time `json:"doNotRunAfter,omitempty"`
	StartWindow        *string    `json:"startWindow,omitempty"`
	RecurrenceInterval *string    `json:"recurrenceInterval,omitempty"`
}

// JobScheduleSpec is everything a customer writes about a job schedule. It
// is sealed as one value.
type JobScheduleSpec struct {
	DisplayName      *string        `json:"displayName,omitempty"`
	Schedule         *Schedule      `json:"schedule,omitempty"`
	JobSpecification *JobSpec       `json:"jobSpecification,omitempty"`
	Metadata         []MetadataItem `json:"metadata,omitempty"`
}

// JobScheduleUpdate is a PATCH of a job schedule: nil fields keep their
// value.
type JobScheduleUpdate struct {
	Schedule         *Schedule      `json:"schedule,omitempty"`
	JobSpecification *JobSpec       `json:"jobSpecification,omitempty"`
	Metadata         []MetadataItem `json:"metadata,omitempty"`
}

// JobScheduleMeta is what is stored in the clear about a job schedule: id,
// state, times, etag, and the bookkeeping of its runs, which the runner
// reads without the DEK.
type JobScheduleMeta struct {
	ID                          string
	State                       string
	PreviousState               string
	ETag                        string
	CreationTime                time.Time
	LastModified                time.Time
	StateTransitionTime         time.Time
	PreviousStateTransitionTime time.Time
	EndTime                     time.Time
	// NextRunTime is when the next job is due; zero when no job will be
	// created any more.
	NextRunTime time.Time
	// LastRunTime is the occurrence the last job was created for.
	LastRunTime time.Time
	// JobCount is n of the last job created ({id}:job-{n}); 0 before any.
	JobCount int64
	// RecentJobID is the id of the last job created.
	RecentJobID string
}

// JobSchedule is a job schedule with its opened specification.
type JobSchedule struct {
	JobScheduleMeta
	Spec JobScheduleSpec
}

// JobScheduleRecord is a job schedule as stored.
type JobScheduleRecord struct {
	JobScheduleMeta
	// Account is the account's name (set by DueJobSchedules).
	Account string
	Sealed  []byte
}

// JobScheduleStore is the persistence of job schedules. Ids compare
// case-insensitively; a missing schedule is KindNotFound
// JobScheduleNotFound, an etag mismatch KindPreconditionFailed.
type JobScheduleStore interface {
	CreateJobSchedule(ctx context.Context, account string, s *JobScheduleRecord) error // KindConflict JobScheduleExists
	JobSchedule(ctx context.Context, account, id string) (*JobScheduleRecord, error)
	ListJobSchedules(ctx context.Context, account string, o ListOptions) ([]*JobScheduleRecord, error)
	// UpdateJobSchedule replaces s if its stored etag is still prevETag.
	UpdateJobSchedule(ctx context.Context, account string, s *JobScheduleRecord, prevETag string) error
	DeleteJobSchedule(ctx context.Context, account, id string) error
	// DueJobSchedules returns, across accounts, the schedules the runner
	// has work on at now: active ones whose next run is due or that have
	// no next run (they complete once their last job has), and those
	// being terminated or deleted.
	DueJobSchedules(ctx context.Context, now time.Time, limit int) ([]*JobScheduleRecord, error)
	// ListScheduleJobs returns a page of the jobs a schedule created (ids
	// {scheduleId}:job-{n}), in id order.
	ListScheduleJobs(ctx context.Context, account, scheduleID string, o ListOptions) ([]*JobRecord, error)
}

// JobScheduleRef is the Ref of a job schedule's sealed spec.
func JobScheduleRef(id string) Ref { return scheduleRef(id) }

func scheduleRef(id string) Ref {
	return Ref{Kind: KindJobSchedule, ID: strings.ToLower(id), Field: fieldSpec}
}

// ScheduleJobID is the id of the n-th job of a schedule, as Azure names
// it.
func ScheduleJobID(scheduleID string, n int64) string {
	return scheduleID + ":job-" + strconv.FormatInt(n, 10)
}

// ParseDuration parses an ISO 8601 duration as Batch takes them (PT1H30M,
// P1DT2S, PT0.5S).
func ParseDuration(s string) (time.Duration, error) {
	bad := custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "%q is not an ISO 8601 duration; use a value such as PT1H or P2DT30M.", clip(s))
	up := strings.ToUpper(strings.TrimSpace(s))
	if !isoDuration.MatchString(up) || len(up) < 3 || strings.HasSuffix(up, "T") {
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
			case !inTime && c == 'Y':
				u = 365 * 24 * time.Hour
			case !inTime && c == 'M':
				u = 30 * 24 * time.Hour
			case !inTime && c == 'W':
				u = 7 * 24 * time.Hour
			case !inTime && c == 'D':
				u = 24 * time.Hour
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
	if d > float64(1<<62) {
		return time.Duration(1 << 62), nil
	}
	return time.Duration(d), nil
}

// scheduleTimes are a schedule's opened timings.
type scheduleTimes struct {
	until, after time.Time     // zero: none
	interval     time.Duration // 0: does not recur
	window       time.Duration // 0: infinite
}

func (d *DataService) minScheduleInterval() time.Duration {
	if d.MinScheduleInterval > 0 {
		return d.MinScheduleInterval
	}
	return MinScheduleInterval
}

// validateSchedule checks a schedule and returns its timings.
func (d *DataService) validateSchedule(what string, s *Schedule) (scheduleTimes, error) {
	var t scheduleTimes
	if s == nil {
		return t, nil
	}
	least := d.minScheduleInterval()
	for _, p := range []struct {
		name string
		v    *string
		to   *time.Duration
	}{{"schedule.recurrenceInterval", s.RecurrenceInterval, &t.interval}, {"schedule.startWindow", s.StartWindow, &t.window}} {
		if p.v == nil {
			continue
		}
		dur, err := ParseDuration(*p.v)
		if err != nil {
			return t, invalid("InvalidPropertyValue", p.name, "%s: %s %q is not an ISO-8601 duration; use a value such as PT1H or P1D.", what, p.name, clip(*p.v))
		}
		if dur < least {
			return t, invalid("InvalidPropertyValue", p.name, "%s: %s %s is shorter than the minimum of %s; give %s or more.", what, p.name, *p.v, formatISO(least), formatISO(least))
		}
		*p.to = dur
	}
	if s.DoNotRunUntil != nil {
		t.until = s.DoNotRunUntil.UTC()
	}
	if s.DoNotRunAfter != nil {
		t.after = s.DoNotRunAfter.UTC()
	}
	return t, nil
}

// formatISO writes a duration of whole seconds as an ISO 8601 duration.
func formatISO(d time.Duration) string {
	if d%time.Minute == 0 {
		return "PT" + strconv.FormatInt(int64(d/time.Minute), 10) + "M"
	}
	return "PT" + strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "S"
}

// times returns the timings of a stored (validated) schedule, whatever
// minimum applies today.
func (d *DataService) times(s *JobScheduleSpec) scheduleTimes {
	var t scheduleTimes
	sc := s.Schedule
	if sc == nil {
		return t
	}
	if sc.RecurrenceInterval != nil {
		t.interval, _ = ParseDuration(*sc.RecurrenceInterval)
	}
	if sc.StartWindow != nil {
		t.window, _ = ParseDuration(*sc.StartWindow)
	}
	if sc.DoNotRunUntil != nil {
		t.until = sc.DoNotRunUntil.UTC()
	}
	if sc.DoNotRunAfter != nil {
		t.after = sc.DoNotRunAfter.UTC()
	}
	return t
}

// validateJobSpecification checks a schedule's job specification; the
// jobs it creates are named after the schedule.
func validateJobSpecification(id string, js *JobSpec) error {
	if js == nil {
		return invalid("MissingRequiredProperty", "jobSpecification", "Job schedule %s: the property jobSpecification is required: say what each job of the schedule is.", id)
	}
	js.TerminateReason = nil
	if err := validateJobSpec(id, js); err != nil {
		if ce, ok := err.(*custody.Error); ok && ce.Target != "" && !strings.HasPrefix(ce.Target, "jobSpecification.") {
			c := *ce
			c.Target = "jobSpecification." + ce.Target
			return &c
		}
		return err
	}
	return nil
}

// firstRun is when a schedule with timings t, changed at now, next creates
// a job, given the meta of the jobs it created so far; zero when it will
// create none.
func firstRun(t scheduleTimes, m *JobScheduleMeta, now time.Time) time.Time {
	next := now
	if !t.until.IsZero() && t.until.After(next) {
		next = t.until
	}
	if m.JobCount > 0 {
		switch {
		case t.interval > 0:
			if c := m.LastRunTime.Add(t.interval); c.After(next) {
				next = c
			}
		case t.until.IsZero() || !t.until.After(m.LastRunTime):
			// A schedule that does not recur has created its job.
			return time.Time{}
		}
	}
	if !t.after.IsZero() && next.After(t.after) {
		return time.Time{}
	}
	return next
}

func (s *JobSchedule) setState(state string, now time.Time) {
	s.PreviousState, s.PreviousStateTransitionTime = s.State, s.StateTransitionTime
	s.State, s.StateTransitionTime = state, now
}

func (d *DataService) openSchedule(a *Account, dek *DEK, r *JobScheduleRecord) (*JobSchedule, error) {
	s := &JobSchedule{JobScheduleMeta: r.JobScheduleMeta}
	if err := open(a, dek, scheduleRef(r.ID), r.Sealed, &s.Spec); err != nil {
		return nil, err
	}
	return s, nil
}

func (d *DataService) sealSchedule(a *Account, dek *DEK, s *JobSchedule) (*JobScheduleRecord, error) {
	b, err := seal(a, dek, scheduleRef(s.ID), s.Spec)
	if err != nil {
		return nil, err
	}
	return &JobScheduleRecord{JobScheduleMeta: s.JobScheduleMeta, Account: a.Name, Sealed: b}, nil
}

func (d *DataService) schedules() (JobScheduleStore, error) {
	if d.Schedules == nil {
		return nil, custody.Errorf(custody.KindUnavailable, "NotImplemented", "Job schedules are not available on this server.")
	}
	return d.Schedules, nil
}

// AddJobSchedule creates a job schedule in state active. Errors: invalid
// spec, JobScheduleExists, JobWithSameIdExists, the active job and schedule
// quota, AccountKeyInaccessible.
func (d *DataService) AddJobSchedule(ctx context.Context, account, id string, spec JobScheduleSpec) (*JobSchedule, error) {
	st, err := d.schedules()
	if err != nil {
		return nil, err
	}
	if !recordID.MatchString(id) {
		return nil, invalid("InvalidPropertyValue", "id", "The job schedule id %q is not valid: use 1 to 64 letters, digits, hyphens and underscores.", clip(id))
	}
	what := "Job schedule " + id
	if spec.Schedule == nil {
		return nil, invalid("MissingRequiredProperty", "schedule", "%s: the property schedule is required; give {} to create one job at once.", what)
	}
	if err := validDisplayName(what, spec.DisplayName); err != nil {
		return nil, err
	}
	if err := validMetadata(what, spec.Metadata); err != nil {
		return nil, err
	}
	t, err := d.validateSchedule(what, spec.Schedule)
	if err != nil {
		return nil, err
	}
	if err := validateJobSpecification(id, spec.JobSpecification); err != nil {
		return nil, err
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	if err := d.checkAutoPool(ctx, a.Name, what, &spec.JobSpecification.PoolInfo, true); err != nil {
		return nil, err
	}
	jobQuota.Lock()
	defer jobQuota.Unlock()
	if err := d.checkJobQuota(ctx, a); err != nil {
		return nil, err
	}
	if _, err := d.Store.Job(ctx, a.Name, id); err == nil {
		return nil, custody.Errorf(custody.KindConflict, "JobWithSameIdExists", "A job with the specified job schedule id exists: job %q. Job and job schedule cannot have the same id; use another id.", id)
	} else if !custody.IsNotFound(err) {
		return nil, err
	}
	now := d.now()
	s := &JobSchedule{JobScheduleMeta: JobScheduleMeta{ID: id, State: ScheduleActive, ETag: newETag(now),
		CreationTime: now, LastModified: now, StateTransitionTime: now}, Spec: spec}
	s.NextRunTime = firstRun(t, &s.JobScheduleMeta, now)
	rec, err := d.sealSchedule(a, dek, s)
	if err != nil {
		return nil, err
	}
	if err := st.CreateJobSchedule(ctx, a.Name, rec); err != nil {
		return nil, err
	}
	d.kickSchedules()
	return s, nil
}

// GetJobSchedule returns a job schedule (JobScheduleNotFound).
func (d *DataService) GetJobSchedule(ctx context.Context, account, id string) (*JobSchedule, error) {
	st, err := d.schedules()
	if err != nil {
		return nil, err
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	r, err := st.JobSchedule(ctx, a.Name, id)
	if err != nil {
		return nil, err
	}
	return d.openSchedule(a, dek, r)
}

func scheduleProps(r *JobScheduleRecord) map[string]string {
	return map[string]string{"id": r.ID, "state": r.State, "previousstate": r.PreviousState, "etag": r.ETag}
}

// ListJobSchedules returns a page of job schedules matching q.Filter.
func (d *DataService) ListJobSchedules(ctx context.Context, account string, q ListQuery) ([]*JobSchedule, string, error) {
	st, err := d.schedules()
	if err != nil {
		return nil, "", err
	}
	f, err := ParseFilter(q.Filter, "state", "id", "previousState", "eTag")
	if err != nil {
		return nil, "", err
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, "", err
	}
	rs, next, err := listPage(ctx, q, f, func(r *JobScheduleRecord) string { return strings.ToLower(r.ID) }, scheduleProps,
		func(o ListOptions) ([]*JobScheduleRecord, error) { return st.ListJobSchedules(ctx, a.Name, o) })
	if err != nil {
		return nil, "", err
	}
	out := make([]*JobSchedule, 0, len(rs))
	for _, r := range rs {
		s, err := d.openSchedule(a, dek, r)
		if err != nil {
			return nil, "", err
		}
		out = append(out, s)
	}
	return out, next, nil
}

// ListScheduleJobs returns a page of the jobs a schedule created.
func (d *DataService) ListScheduleJobs(ctx context.Context, account, id string, q ListQuery) ([]*Job, string, error) {
	st, err := d.schedules()
	if err != nil {
		return nil, "", err
	}
	f, err := ParseFilter(q.Filter, "state", "id", "previousState", "poolInfo/poolId", "executionInfo/poolId", "eTag")
	if err != nil {
		return nil, "", err
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, "", err
	}
	if _, err := st.JobSchedule(ctx, a.Name, id); err != nil {
		return nil, "", err
	}
	rs, next, err := listPage(ctx, q, f, func(r *JobRecord) string { return strings.ToLower(r.ID) }, jobProps,
		func(o ListOptions) ([]*JobRecord, error) { return st.ListScheduleJobs(ctx, a.Name, id, o) })
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

// changeSchedule reads a schedule, applies fn, and writes it back if its
// etag did not change in between (retried without If-Match).
func (d *DataService) changeSchedule(ctx context.Context, account, id, ifMatch string, fn func(s *JobSchedule) error) (*JobSchedule, error) {
	st, err := d.schedules()
	if err != nil {
		return nil, err
	}
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	var s *JobSchedule
	err = retryChange(ifMatch, func() error {
		r, err := st.JobSchedule(ctx, a.Name, id)
		if err != nil {
			return err
		}
		if err := checkIfMatch(ifMatch, r.ETag, "job schedule", id); err != nil {
			return err
		}
		if s, err = d.openSchedule(a, dek, r); err != nil {
			return err
		}
		if err := fn(s); err != nil {
			return err
		}
		now := d.now()
		s.ETag, s.LastModified = newETag(now), now
		nr, err := d.sealSchedule(a, dek, s)
		if err != nil {
			return err
		}
		return st.UpdateJobSchedule(ctx, a.Name, nr, r.ETag)
	})
	if err != nil {
		return nil, err
	}
	d.kickSchedules()
	return s, nil
}

// scheduleWritable refuses changes to schedules that completed or are
// ending.
func scheduleWritable(s *JobSchedule) error {
	switch s.State {
	case ScheduleCompleted:
		return custody.Errorf(custody.KindConflict, "JobScheduleCompleted", "The specified job schedule is already in completed state: job schedule %q cannot be changed. Create a new schedule.", s.ID)
	case ScheduleTerminating:
		return custody.Errorf(custody.KindConflict, "JobScheduleBeingTerminated", "The specified job schedule is being terminated: job schedule %q cannot be changed.", s.ID)
	case ScheduleDeleting:
		return custody.Errorf(custody.KindConflict, "JobScheduleBeingDeleted", "The specified job schedule has been marked for deletion and is being reclaimed: job schedule %q cannot be changed.", s.ID)
	}
	return nil
}

// ReplaceJobSchedule replaces a schedule's updatable properties (PUT):
// schedule, jobSpecification and metadata; a schedule not given becomes
// the default (one job, at once). Jobs already created keep their
// specification.
func (d *DataService) ReplaceJobSchedule(ctx context.Context, account, id, ifMatch string, u JobScheduleUpdate) (*JobSchedule, error) {
	if u.Schedule == nil {
		u.Schedule = &Schedule{}
	}
	return d.updateSchedule(ctx, account, id, ifMatch, u, true)
}

// UpdateJobSchedule merges u into a schedule (PATCH).
func (d *DataService) UpdateJobSchedule(ctx context.Context, account, id, ifMatch string, u JobScheduleUpdate) (*JobSchedule, error) {
	return d.updateSchedule(ctx, account, id, ifMatch, u, false)
}

func (d *DataService) updateSchedule(ctx context.Context, account, id, ifMatch string, u JobScheduleUpdate, replace bool) (*JobSchedule, error) {
	what := "Job schedule " + id
	if replace || u.JobSpecification != nil {
		if err := validateJobSpecification(id, u.JobSpecification); err != nil {
			return nil, err
		}
	}
	if err := validMetadata(what, u.Metadata); err != nil {
		return nil, err
	}
	t, err := d.validateSchedule(what, u.Schedule)
	if err != nil {
		return nil, err
	}
	if u.JobSpecification != nil {
		if err := d.checkAutoPool(ctx, account, what, &u.JobSpecification.PoolInfo, true); err != nil {
			return nil, err
		}
	}
	return d.changeSchedule(ctx, account, id, ifMatch, func(s *JobSchedule) error {
		if err := scheduleWritable(s); err != nil {
			return err
		}
		if u.JobSpecification != nil {
			s.Spec.JobSpecification = u.JobSpecification
		}
		if replace || u.Metadata != nil {
			s.Spec.Metadata = u.Metadata
		}
		if u.Schedule != nil {
			s.Spec.Schedule = u.Schedule
			s.NextRunTime = firstRun(t, &s.JobScheduleMeta, d.now())
		}
		return nil
	})
}

// DisableJobSchedule stops a schedule creating jobs until it is enabled.
func (d *DataService) DisableJobSchedule(ctx context.Context, account, id, ifMatch string) (*JobSchedule, error) {
	return d.changeSchedule(ctx, account, id, ifMatch, func(s *JobSchedule) error {
		if err := scheduleWritable(s); err != nil {
			return err
		}
		if s.State == ScheduleActive {
			s.setState(ScheduleDisabled, d.now())
		}
		return nil
	})
}

// EnableJobSchedule enables a disabled schedule. Occurrences of a
// recurring schedule that passed while it was disabled are not run.
func (d *DataService) EnableJobSchedule(ctx context.Context, account, id, ifMatch string) (*JobSchedule, error) {
	return d.changeSchedule(ctx, account, id, ifMatch, func(s *JobSchedule) error {
		if err := scheduleWritable(s); err != nil {
			return err
		}
		if s.State != ScheduleDisabled {
			return nil
		}
		now := d.now()
		s.setState(ScheduleActive, now)
		t := d.times(&s.Spec)
		if t.interval > 0 && !s.NextRunTime.IsZero() && s.NextRunTime.Before(now) {
			k := (now.Sub(s.NextRunTime) + t.interval - 1) / t.interval
			s.NextRunTime = s.NextRunTime.Add(k * t.interval)
			if !t.after.IsZero() && s.NextRunTime.After(t.after) {
				s.NextRunTime = time.Time{}
			}
		}
		return nil
	})
}

// TerminateJobSchedule ends a schedule: it creates no more jobs, its
// active job is terminated, and it completes.
func (d *DataService) TerminateJobSchedule(ctx context.Context, account, id, ifMatch string) (*JobSchedule, error) {
	s, err := d.changeSchedule(ctx, account, id, ifMatch, func(s *JobSchedule) error {
		switch s.State {
		case ScheduleCompleted, ScheduleDeleting:
			return scheduleWritable(s)
		case ScheduleTerminating:
			return nil
		}
		s.setState(ScheduleTerminating, d.now())
		s.NextRunTime = time.Time{}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The runner finishes what this does not (a restart in between).
	if done, err := d.finishSchedule(ctx, account, s.ID); err == nil && done != nil {
		s = done
	}
	return s, nil
}

// DeleteJobSchedule deletes a schedule and the jobs it created.
func (d *DataService) DeleteJobSchedule(ctx context.Context, account, id, ifMatch string) error {
	s, err := d.changeSchedule(ctx, account, id, ifMatch, func(s *JobSchedule) error {
		if s.State != ScheduleDeleting {
			s.setState(ScheduleDeleting, d.now())
			s.NextRunTime = time.Time{}
		}
		return nil
	})
	if err != nil {
		return err
	}
	_, _ = d.finishSchedule(ctx, account, s.ID)
	return nil
}
