package batch

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"custody"
)

// The job schedule runner. A schedule's next run time, the number of the
// last job it created and the occurrence that job was for are stored in the
// clear with the schedule, so the runner finds due schedules with one
// indexed query and a restart picks up where the last run left off:
//
//   - the job of occurrence n is named {id}:job-{n}; creating it and
//     recording it are two writes, and a crash between them is repaired at
//     the next pass, which finds the job already there (JobExists) and only
//     records it, so a run is never doubled;
//   - a run that fell due while the server was down runs once at start-up if
//     its startWindow has not passed (occurrences missed in between are not
//     carried forward, as in Azure);
//   - a schedule has at most one active job: while the last job is not
//     completed, the next run waits, within its startWindow;
//   - a locked account (its key inaccessible) creates no jobs; its due runs
//     wait, within their startWindow, for the key to come back.

// DefaultScheduleTick is how often the runner looks for due schedules.
const DefaultScheduleTick = time.Second

func (d *DataService) kickChan() chan struct{} {
	d.kickOnce.Do(func() { d.kick = make(chan struct{}, 1) })
	return d.kick
}

// kickSchedules wakes the runner (a schedule was created or changed).
func (d *DataService) kickSchedules() {
	select {
	case d.kickChan() <- struct{}{}:
	default:
	}
}

// RunJobSchedules creates the jobs of due schedules, completes schedules
// that have run their course, and finishes terminating and deleting ones,
// until ctx is done. Only the active replica runs it; Fence is asked before
// each pass.
func (d *DataService) RunJobSchedules(ctx context.Context, log *slog.Logger) {
	if d.Schedules == nil {
		return
	}
	tick := d.ScheduleTick
	if tick <= 0 {
		tick = DefaultScheduleTick
	}
	kick := d.kickChan()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		if d.Fence == nil || d.Fence(ctx) == nil {
			d.schedulePass(ctx, log)
		}
		t.Reset(tick)
	}
}

// schedulePass handles every schedule that has work at now.
func (d *DataService) schedulePass(ctx context.Context, log *slog.Logger) {
	if err := d.sweepAutoPools(ctx); err != nil && ctx.Err() == nil && !isKeyInaccessible(err) {
		log.Warn("auto pools: delete the pools of ended jobs and schedules", "err", err)
	}
	rs, err := d.Schedules.DueJobSchedules(ctx, d.now(), MaxPageSize)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("job schedules: list due schedules", "err", err)
		}
		return
	}
	for _, r := range rs {
		if ctx.Err() != nil {
			return
		}
		var err error
		switch r.State {
		case ScheduleTerminating, ScheduleDeleting:
			_, err = d.finishSchedule(ctx, r.Account, r.ID)
		default:
			err = d.runSchedule(ctx, r.Account, r.ID)
		}
		switch {
		case err == nil, ctx.Err() != nil, custody.IsNotFound(err):
		case custody.ErrorKind(err) == custody.KindPreconditionFailed:
			// Changed meanwhile: the next pass sees the change.
		case isKeyInaccessible(err):
			// A locked account creates no jobs until its key is back.
		default:
			log.Warn("job schedules: run", "account", r.Account, "err", err)
		}
	}
}

func isKeyInaccessible(err error) bool {
	ce, ok := err.(*custody.Error)
	return ok && ce.Code == "AccountKeyInaccessible"
}

// saveRun writes the runner's changes to a schedule: a new etag, the same
// lastModified (Azure's lastModified covers only what the customer
// changed).
func (d *DataService) saveRun(ctx context.Context, a *Account, dek *DEK, s *JobSchedule, prevETag string) error {
	s.ETag = newETag(d.now())
	r, err := d.sealSchedule(a, dek, s)
	if err != nil {
		return err
	}
	return d.Schedules.UpdateJobSchedule(ctx, a.Name, r, prevETag)
}

// runSchedule handles one active schedule: creates its due job, or skips
// a lost occurrence, or completes it.
func (d *DataService) runSchedule(ctx context.Context, account, id string) error {
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return err
	}
	r, err := d.Schedules.JobSchedule(ctx, a.Name, id)
	if err != nil {
		return err
	}
	if r.State != ScheduleActive {
		return nil
	}
	s, err := d.openSchedule(a, dek, r)
	if err != nil {
		return err
	}
	now := d.now()
	recentActive := false
	if s.RecentJobID != "" {
		jr, err := d.Store.Job(ctx, a.Name, s.RecentJobID)
		switch {
		case err == nil:
			recentActive = jr.State != JobCompleted && jr.State != JobDeleting
		case !custody.IsNotFound(err):
			return err
		}
	}
	if s.NextRunTime.IsZero() {
		if recentActive {
			return nil
		}
		s.setState(ScheduleCompleted, now)
		s.EndTime = now
		return d.saveRun(ctx, a, dek, s, r.ETag)
	}
	if now.Before(s.NextRunTime) {
		return nil
	}
	t := d.times(&s.Spec)
	// The latest occurrence due: earlier ones are not carried forward.
	occ := s.NextRunTime
	if t.interval > 0 {
		occ = occ.Add(now.Sub(occ) / t.interval * t.interval)
	}
	var following time.Time
	if t.interval > 0 {
		following = occ.Add(t.interval)
	}
	if !t.after.IsZero() && following.After(t.after) {
		following = time.Time{}
	}
	switch {
	case !t.after.IsZero() && occ.After(t.after):
		// Past doNotRunAfter: no more jobs; the schedule completes
		// once its last job has.
		s.NextRunTime = time.Time{}
		return d.saveRun(ctx, a, dek, s, r.ETag)
	case t.window > 0 && now.After(occ.Add(t.window)):
		// The occurrence's start window passed: its opportunity is lost.
		s.NextRunTime = following
		return d.saveRun(ctx, a, dek, s, r.ETag)
	case recentActive:
		// One active job at a time: the run waits for it.
		if !occ.Equal(s.NextRunTime) {
			s.NextRunTime = occ
			return d.saveRun(ctx, a, dek, s, r.ETag)
		}
		return nil
	}
	n := s.JobCount + 1
	jobID := ScheduleJobID(s.ID, n)
	spec := *s.Spec.JobSpecification
	if _, err := d.createJob(ctx, a, dek, jobID, spec, s.ID); err != nil {
		ce, _ := err.(*custody.Error)
		switch {
		case ce != nil && ce.Code == "JobExists":
			// Created before a crash, not yet recorded: record it.
		case ce != nil && ce.Code == "ActiveJobAndScheduleQuotaReached":
			// Retried at the next pass, within the start window.
			return nil
		default:
			return err
		}
	}
	s.JobCount, s.RecentJobID, s.LastRunTime, s.NextRunTime = n, jobID, occ, following
	return d.saveRun(ctx, a, dek, s, r.ETag)
}

// finishSchedule ends a terminating schedule (its jobs that are not
// completed are terminated, then it completes) or removes a deleting one
// with its jobs. It returns the completed schedule, or nil.
func (d *DataService) finishSchedule(ctx context.Context, account, id string) (*JobSchedule, error) {
	a, dek, err := d.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	r, err := d.Schedules.JobSchedule(ctx, a.Name, id)
	if err != nil {
		return nil, err
	}
	switch r.State {
	case ScheduleTerminating:
		jobs, err := d.Schedules.ListScheduleJobs(ctx, a.Name, id, ListOptions{
			Limit: MaxPageSize, States: []string{JobActive, JobDisabling, JobDisabled, JobEnabling, JobTerminating}})
		if err != nil {
			return nil, err
		}
		for _, j := range jobs {
			if _, err := d.TerminateJob(ctx, a.Name, j.ID, "", ""); err != nil && !custody.IsNotFound(err) && custody.ErrorKind(err) != custody.KindConflict {
				return nil, err
			}
		}
		s, err := d.openSchedule(a, dek, r)
		if err != nil {
			return nil, err
		}
		now := d.now()
		s.setState(ScheduleCompleted, now)
		s.EndTime, s.NextRunTime = now, time.Time{}
		if err := d.saveRun(ctx, a, dek, s, r.ETag); err != nil {
			return nil, err
		}
		return s, nil
	case ScheduleDeleting:
		// DeleteJob deletes a small job at once and hands a large one to
		// RunDeletions (state deleting).
		after := ""
		for {
			jobs, err := d.Schedules.ListScheduleJobs(ctx, a.Name, id, ListOptions{After: after, Limit: 100})
			if err != nil {
				return nil, err
			}
			for _, j := range jobs {
				if err := d.DeleteJob(ctx, a.Name, j.ID, ""); err != nil && !custody.IsNotFound(err) {
					return nil, err
				}
				after = strings.ToLower(j.ID)
			}
			if len(jobs) < 100 {
				break
			}
		}
		if err := d.Schedules.DeleteJobSchedule(ctx, a.Name, id); err != nil && !custody.IsNotFound(err) {
			return nil, err
		}
	}
	return nil, nil
}
