package batch

import (
	"context"
	"sync"

	"custody"
)

// Quotas are an account's limits, as the account's ARM resource reports
// them (dedicatedCoreQuota, lowPriorityCoreQuota, poolQuota,
// activeJobAndJobScheduleQuota) and as the service enforces them:
//
//   - a pool beyond PoolQuota is refused with 409 PoolQuotaReached;
//   - a job while ActiveJobsAndSchedules jobs are not completed is refused
//     with 409 ActiveJobAndScheduleQuotaReached;
//   - nodes beyond the core quotas are not allocated: the pool's target is
//     held at what the quota allows and its resizeErrors carry
//     AccountCoreQuotaReached (or AccountLowPriorityCoreQuotaReached), as
//     Azure reports an allocation stopped by quota.
type Quotas struct {
	DedicatedCores         int
	LowPriorityCores       int
	Pools                  int
	ActiveJobsAndSchedules int
}

// DefaultQuotas are the quotas of every account: those of a new Azure Batch
// account in Batch service pool allocation mode.
var DefaultQuotas = Quotas{DedicatedCores: 500, LowPriorityCores: 500, Pools: 100, ActiveJobsAndSchedules: 300}

// Quotas returns the account's quotas.
func (a *Account) Quotas() Quotas { return DefaultQuotas }

// jobQuota serialises job creation per process so that concurrent creates
// cannot pass the active job quota together.
var jobQuota sync.Mutex

// checkJobQuota refuses a new job or job schedule when the account already
// has its quota of jobs that are not completed and schedules that are
// active or disabled.
func (d *DataService) checkJobQuota(ctx context.Context, a *Account) error {
	q := a.Quotas().ActiveJobsAndSchedules
	recs, err := d.Store.ListJobs(ctx, a.Name, ListOptions{
		Limit:  q,
		States: []string{JobActive, JobDisabling, JobDisabled, JobEnabling, JobTerminating},
	})
	if err != nil {
		return err
	}
	n := len(recs)
	if d.Schedules != nil && n < q {
		ss, err := d.Schedules.ListJobSchedules(ctx, a.Name, ListOptions{Limit: q - n, States: []string{ScheduleActive, ScheduleDisabled}})
		if err != nil {
			return err
		}
		n += len(ss)
	}
	if n >= q {
		return custody.Errorf(custody.KindConflict, "ActiveJobAndScheduleQuotaReached",
			"The specified account has reached its quota of active jobs and job schedules (activeJobAndJobScheduleQuota %d). Terminate or delete jobs or job schedules first.", q)
	}
	return nil
}
