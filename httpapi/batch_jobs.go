package httpapi

import (
	"net/http"
	"time"

	"custody/batch"
)

// jobIn is the body of a job add (CreateJobContent) or replace (Job).
type jobIn struct {
	ID string `json:"id"`
	batch.JobSpec
}

// jobOut is a Job as the Batch REST API returns it.
type jobOut struct {
	Metadata                    string     `json:"odata.metadata,omitempty"`
	ID                          string     `json:"id"`
	URL                         string     `json:"url"`
	ETag                        string     `json:"eTag"`
	LastModified                time.Time  `json:"lastModified"`
	CreationTime                time.Time  `json:"creationTime"`
	State                       string     `json:"state"`
	StateTransitionTime         time.Time  `json:"stateTransitionTime"`
	PreviousState               string     `json:"previousState,omitempty"`
	PreviousStateTransitionTime *time.Time `json:"previousStateTransitionTime,omitempty"`
	batch.JobSpec
	ExecutionInfo jobExecutionOut `json:"executionInfo"`
}

type jobExecutionOut struct {
	StartTime       time.Time  `json:"startTime"`
	EndTime         *time.Time `json:"endTime,omitempty"`
	PoolID          string     `json:"poolId,omitempty"`
	TerminateReason string     `json:"terminateReason,omitempty"`
}

func (q *batchRequest) jobURL(id string) string { return q.baseURL() + "/jobs/" + escapeID(id) }

func (q *batchRequest) jobBody(j *batch.Job, withMetadata bool) jobOut {
	out := jobOut{
		ID: j.ID, URL: q.jobURL(j.ID), ETag: j.ETag, LastModified: j.LastModified, CreationTime: j.CreationTime,
		State: j.State, StateTransitionTime: j.StateTransitionTime, PreviousState: j.PreviousState,
		PreviousStateTransitionTime: optTime(j.PreviousStateTransitionTime), JobSpec: j.Spec,
		ExecutionInfo: jobExecutionOut{StartTime: j.StartTime, EndTime: optTime(j.EndTime), PoolID: j.PoolID, TerminateReason: j.TerminateReason},
	}
	if withMetadata {
		out.Metadata = q.metadata("jobs/@Element")
	}
	return out
}

func (b *batchData) addJob(q *batchRequest) error {
	var in jobIn
	if err := q.decode(&in); err != nil {
		return err
	}
	j, err := b.data.AddJob(q.ctx, q.account.Name, in.ID, in.JobSpec)
	if err != nil {
		return err
	}
	return q.created(j.ETag, j.LastModified, q.jobURL(j.ID))
}

func (b *batchData) getJob(q *batchRequest) error {
	j, err := b.data.GetJob(q.ctx, q.account.Name, q.segment(1))
	if err != nil {
		return err
	}
	return q.writeEntity(q.jobBody(j, true), j.ETag, j.LastModified)
}

func (b *batchData) listJobs(q *batchRequest) error {
	lq, err := q.listQuery()
	if err != nil {
		return err
	}
	js, next, err := b.data.ListJobs(q.ctx, q.account.Name, lq)
	if err != nil {
		return err
	}
	items := make([]any, len(js))
	for i, j := range js {
		items[i] = q.jobBody(j, false)
	}
	return q.writeList("jobs", items, next)
}

// jobChanged answers a job change: status with ETag, Last-Modified and
// DataServiceId, no body.
func (q *batchRequest) jobChanged(j *batch.Job, status int) error {
	q.entityHeaders(j.ETag, j.LastModified, q.jobURL(j.ID))
	return q.noBody(status)
}

func (b *batchData) replaceJob(q *batchRequest) error {
	var in jobIn
	if err := q.decode(&in); err != nil {
		return err
	}
	j, err := b.data.ReplaceJob(q.ctx, q.account.Name, q.segment(1), q.ifMatch(), in.JobSpec)
	if err != nil {
		return err
	}
	return q.jobChanged(j, http.StatusOK)
}

func (b *batchData) updateJob(q *batchRequest) error {
	var in batch.JobUpdate
	if err := q.decode(&in); err != nil {
		return err
	}
	j, err := b.data.UpdateJob(q.ctx, q.account.Name, q.segment(1), q.ifMatch(), in)
	if err != nil {
		return err
	}
	return q.jobChanged(j, http.StatusOK)
}

func (b *batchData) deleteJob(q *batchRequest) error {
	if err := b.data.DeleteJob(q.ctx, q.account.Name, q.segment(1), q.ifMatch()); err != nil {
		return err
	}
	return q.noBody(http.StatusAccepted)
}

func (b *batchData) disableJob(q *batchRequest) error {
	var in struct {
		DisableTasks string `json:"disableTasks"`
	}
	if err := q.decode(&in); err != nil {
		return err
	}
	j, err := b.data.DisableJob(q.ctx, q.account.Name, q.segment(1), q.ifMatch(), in.DisableTasks)
	if err != nil {
		return err
	}
	return q.jobChanged(j, http.StatusAccepted)
}

func (b *batchData) enableJob(q *batchRequest) error {
	j, err := b.data.EnableJob(q.ctx, q.account.Name, q.segment(1), q.ifMatch())
	if err != nil {
		return err
	}
	return q.jobChanged(j, http.StatusAccepted)
}

func (b *batchData) terminateJob(q *batchRequest) error {
	var in struct {
		TerminateReason string `json:"terminateReason"`
	}
	if _, err := q.decodeOptional(&in); err != nil {
		return err
	}
	j, err := b.data.TerminateJob(q.ctx, q.account.Name, q.segment(1), q.ifMatch(), in.TerminateReason)
	if err != nil {
		return err
	}
	return q.jobChanged(j, http.StatusAccepted)
}

func (b *batchData) jobTaskCounts(q *batchRequest) error {
	c, err := b.data.JobTaskCounts(q.ctx, q.account.Name, q.segment(1))
	if err != nil {
		return err
	}
	type counts struct {
		Active    int32 `json:"active"`
		Running   int32 `json:"running"`
		Completed int32 `json:"completed"`
		Succeeded int32 `json:"succeeded"`
		Failed    int32 `json:"failed"`
	}
	tc := counts{c.Active, c.Running, c.Completed, c.Succeeded, c.Failed}
	writeJSON(q.w, http.StatusOK, struct {
		Metadata       string `json:"odata.metadata"`
		TaskCounts     counts `json:"taskCounts"`
		TaskSlotCounts counts `json:"taskSlotCounts"`
	}{q.metadata("Microsoft.Azure.Batch.Protocol.Entities.TaskCountsResult"), tc, tc})
	return nil
}
