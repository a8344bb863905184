package batch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"
	"time"

	"custody"
)

// Auto pools: a job (or each job of a schedule) can describe the pool it
// runs on instead of naming one (poolInfo.autoPoolSpecification). The pool
// is created with the job, or with the schedule's first job, as
// {autoPoolIdPrefix}_{random id}, and deleted when its job completes or is
// deleted (poolLifetimeOption job) or when its schedule completes or is
// deleted (jobschedule), unless keepAlive. Which pool belongs to which job
// or schedule is stored in the clear (AutoPoolStore); the pool's
// specification is part of the job's, sealed with it.

// Pool lifetime options, as Azure spells them.
const (
	PoolLifetimeJob         = "job"
	PoolLifetimeJobSchedule = "jobschedule"
)

// AutoPoolSpecification describes the pool created for a job.
type AutoPoolSpecification struct {
	AutoPoolIDPrefix   *string `json:"autoPoolIdPrefix,omitempty"`
	PoolLifetimeOption string  `json:"poolLifetimeOption"`
	KeepAlive          *bool   `json:"keepAlive,omitempty"`
	// Pool is the pool's specification (the Batch REST API's
	// PoolSpecification), checked and created by the compute service.
	Pool json.RawMessage `json:"pool,omitempty"`
}

// AutoPools creates and deletes the pools of auto-pool specifications (the
// compute service, through an adapter).
type AutoPools interface {
	// ValidateAutoPool checks a pool specification without creating it.
	ValidateAutoPool(ctx context.Context, account string, pool json.RawMessage) error
	// CreateAutoPool creates pool id; an existing pool of that id is not
	// an error.
	CreateAutoPool(ctx context.Context, account, id string, pool json.RawMessage) error
	// DeleteAutoPool deletes pool id; a missing pool is not an error.
	DeleteAutoPool(ctx context.Context, account, id string) error
}

// Owners of auto pools.
const (
	AutoPoolOwnerJob      = "job"
	AutoPoolOwnerSchedule = "jobschedule"
)

// AutoPoolRecord says which job or schedule an auto pool belongs to.
type AutoPoolRecord struct {
	Account   string
	PoolID    string
	OwnerKind string // AutoPoolOwnerJob or AutoPoolOwnerSchedule
	OwnerID   string
	KeepAlive bool
	// Bound is false from the pool's creation until its job is stored: a
	// record left unbound by a crash is cleaned up after a while.
	Bound     bool
	CreatedAt time.Time
}

// AutoPoolStore is the persistence of auto pool records.
type AutoPoolStore interface {
	AddAutoPool(ctx context.Context, r *AutoPoolRecord) error
	BindAutoPool(ctx context.Context, account, poolID string) error
	// ScheduleAutoPool returns the pool of a schedule (KindNotFound if
	// none).
	ScheduleAutoPool(ctx context.Context, account, scheduleID string) (*AutoPoolRecord, error)
	ListAutoPools(ctx context.Context, limit int) ([]*AutoPoolRecord, error)
	DeleteAutoPoolRecord(ctx context.Context, account, poolID string) error
}

// unboundGrace is how long an auto pool may wait for its job to be stored
// before the sweep takes it for the leftover of a crash.
const unboundGrace = time.Minute

var autoPoolPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]{0,20}$`)

func validateAutoPool(what string, ap *AutoPoolSpecification) error {
	if err := oneOf(what, "poolInfo.autoPoolSpecification.poolLifetimeOption", &ap.PoolLifetimeOption, PoolLifetimeJob, PoolLifetimeJobSchedule); err != nil {
		return err
	}
	if ap.AutoPoolIDPrefix != nil && !autoPoolPrefix.MatchString(*ap.AutoPoolIDPrefix) {
		return invalid("InvalidPropertyValue", "poolInfo.autoPoolSpecification.autoPoolIdPrefix", "%s: autoPoolIdPrefix %q is not valid: use up to 20 letters, digits, hyphens and underscores.", what, clip(*ap.AutoPoolIDPrefix))
	}
	if p := strings.TrimSpace(string(ap.Pool)); p == "" || p == "null" {
		return invalid("MissingRequiredProperty", "poolInfo.autoPoolSpecification.pool", "%s: poolInfo.autoPoolSpecification.pool is required: describe the pool (vmSize, targetDedicatedNodes, ...).", what)
	}
	return nil
}

// checkAutoPool checks an auto pool of a job (schedule false) or a
// schedule's job specification against the compute service.
func (d *DataService) checkAutoPool(ctx context.Context, account, what string, pi *PoolInfo, schedule bool) error {
	ap := pi.AutoPoolSpecification
	if ap == nil {
		return nil
	}
	if d.AutoPools == nil || d.AutoPoolStore == nil {
		return invalid("AutoPoolNotSupported", "poolInfo.autoPoolSpecification", "%s: auto pools are not available on this server; create a pool and name it in poolInfo.poolId.", what)
	}
	if !schedule && ap.PoolLifetimeOption == PoolLifetimeJobSchedule {
		return invalid("InvalidPropertyValue", "poolInfo.autoPoolSpecification.poolLifetimeOption", "%s: poolLifetimeOption jobschedule is for the jobs of a job schedule; a job's auto pool lives as long as the job (job).", what)
	}
	if err := d.AutoPools.ValidateAutoPool(ctx, account, ap.Pool); err != nil {
		if ce, ok := err.(*custody.Error); ok && ce.Kind == custody.KindInvalid {
			c := *ce
			c.Message = what + ": poolInfo.autoPoolSpecification.pool: " + ce.Message
			if c.Target == "" {
				c.Target = "poolInfo.autoPoolSpecification.pool"
			}
			return &c
		}
		return err
	}
	return nil
}

func newAutoPoolID(ap *AutoPoolSpecification) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	prefix := ""
	if ap.AutoPoolIDPrefix != nil {
		prefix = *ap.AutoPoolIDPrefix
	}
	return prefix + "_" + h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// autoPool creates (or, for a schedule's pool, finds) the auto pool of a
// job about to be created, and returns its id and, for a pool of the job's
// own, a function that binds it once the job is stored (or, given an
// error, deletes it).
func (d *DataService) autoPool(ctx context.Context, account, jobID, scheduleID string, ap *AutoPoolSpecification) (string, func(stored error), error) {
	keep := ap.KeepAlive != nil && *ap.KeepAlive
	if ap.PoolLifetimeOption == PoolLifetimeJobSchedule && scheduleID != "" {
		r, err := d.AutoPoolStore.ScheduleAutoPool(ctx, account, scheduleID)
		switch {
		case err == nil:
		case custody.IsNotFound(err):
			r = &AutoPoolRecord{Account: account, PoolID: newAutoPoolID(ap), OwnerKind: AutoPoolOwnerSchedule, OwnerID: scheduleID,
				KeepAlive: keep, Bound: true, CreatedAt: d.now()}
			if err := d.AutoPoolStore.AddAutoPool(ctx, r); err != nil {
				return "", nil, err
			}
		default:
			return "", nil, err
		}
		// Created again if a crash came between the record and the pool.
		if err := d.AutoPools.CreateAutoPool(ctx, account, r.PoolID, ap.Pool); err != nil {
			return "", nil, err
		}
		return r.PoolID, func(error) {}, nil
	}
	r := &AutoPoolRecord{Account: account, PoolID: newAutoPoolID(ap), OwnerKind: AutoPoolOwnerJob, OwnerID: jobID, KeepAlive: keep, CreatedAt: d.now()}
	if err := d.AutoPoolStore.AddAutoPool(ctx, r); err != nil {
		return "", nil, err
	}
	if err := d.AutoPools.CreateAutoPool(ctx, account, r.PoolID, ap.Pool); err != nil {
		_ = d.AutoPoolStore.DeleteAutoPoolRecord(ctx, account, r.PoolID)
		return "", nil, err
	}
	return r.PoolID, func(stored error) {
		if stored == nil {
			_ = d.AutoPoolStore.BindAutoPool(ctx, account, r.PoolID)
			return
		}
		if d.AutoPools.DeleteAutoPool(ctx, account, r.PoolID) == nil {
			_ = d.AutoPoolStore.DeleteAutoPoolRecord(ctx, account, r.PoolID)
		}
	}, nil
}

// sweepAutoPools deletes the auto pools whose job or schedule is over
// (unless keepAlive) and forgets them.
func (d *DataService) sweepAutoPools(ctx context.Context) error {
	if d.AutoPoolStore == nil || d.AutoPools == nil {
		return nil
	}
	rs, err := d.AutoPoolStore.ListAutoPools(ctx, MaxPageSize)
	if err != nil {
		return err
	}
	now := d.now()
	var first error
	for _, r := range rs {
		if err := d.sweepAutoPool(ctx, r, now); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (d *DataService) sweepAutoPool(ctx context.Context, r *AutoPoolRecord, now time.Time) error {
	over := false
	switch r.OwnerKind {
	case AutoPoolOwnerJob:
		j, err := d.Store.Job(ctx, r.Account, r.OwnerID)
		switch {
		case custody.IsNotFound(err):
			over = r.Bound || now.Sub(r.CreatedAt) > unboundGrace
		case err != nil:
			return err
		case !r.Bound:
			// Stored, not yet bound: a crash came in between.
			if now.Sub(r.CreatedAt) > unboundGrace {
				if err := d.AutoPoolStore.BindAutoPool(ctx, r.Account, r.PoolID); err != nil {
					return err
				}
			}
			over = j.State == JobCompleted
		default:
			over = j.State == JobCompleted
		}
	case AutoPoolOwnerSchedule:
		s, err := d.Schedules.JobSchedule(ctx, r.Account, r.OwnerID)
		switch {
		case custody.IsNotFound(err):
			over = true
		case err != nil:
			return err
		default:
			over = s.State == ScheduleCompleted
		}
	}
	if !over {
		return nil
	}
	if !r.KeepAlive {
		if err := d.AutoPools.DeleteAutoPool(ctx, r.Account, r.PoolID); err != nil && !custody.IsNotFound(err) {
			return err
		}
	}
	if err := d.AutoPoolStore.DeleteAutoPoolRecord(ctx, r.Account, r.PoolID); err != nil && !custody.IsNotFound(err) {
		return err
	}
	return nil
}
