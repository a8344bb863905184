package httpapi

import (
	"net/http"
	"time"

	"custody/batch"
)

// Job schedules on the batch data plane:
//
//	GET|POST              /jobschedules
//	GET|HEAD|PUT|PATCH|DELETE /jobschedules/{id}
//	POST                  /jobschedules/{id}/disable|enable|terminate
//	GET                   /jobschedules/{id}/jobs

// jobScheduleRoutes are the job schedule routes (part of batchRoutes).
func jobScheduleRoutes() []batchRoute {
	type d = batchData
	return []batchRoute{
		{DataRoute: DataRoute{"GET", "/jobschedules"}, serve: (*d).listJobSchedules},
		{DataRoute: DataRoute{"POST", "/jobschedules"}, serve: (*d).addJobSchedule},
		{DataRoute: DataRoute{"GET", "/jobschedules/{jobScheduleId}"}, serve: (*d).getJobSchedule},
		{DataRoute: DataRoute{"HEAD", "/jobschedules/{jobScheduleId}"}, serve: (*d).getJobSchedule},
		{DataRoute: DataRoute{"PUT", "/jobschedules/{jobScheduleId}"}, serve: (*d).replaceJobSchedule},
		{DataRoute: DataRoute{"PATCH", "/jobschedules/{jobScheduleId}"}, serve: (*d).updateJobSchedule},
		{DataRoute: DataRoute{"DELETE", "/jobschedules/{jobScheduleId}"}, serve: (*d).deleteJobSchedule},
		{DataRoute: DataRoute{"POST", "/jobschedules/{jobScheduleId}/disable"}, serve: (*d).disableJobSchedule},
		{DataRoute: DataRoute{"POST", "/jobschedules/{jobScheduleId}/enable"}, serve: (*d).enableJobSchedule},
		{DataRoute: DataRoute{"POST", "/jobschedules/{jobScheduleId}/terminate"}, serve: (*d).terminateJobSchedule},
		{DataRoute: DataRoute{"GET", "/jobschedules/{jobScheduleId}/jobs"}, serve: (*d).listScheduleJobs},
	}
}

// jobScheduleIn is the body of a job schedule add (CreateJobScheduleContent).
type jobScheduleIn struct {
	ID string `json:"id"`
	batch.JobScheduleSpec
}

// jobScheduleOut is a JobSchedule as the Batch REST API returns it.
type jobScheduleOut struct {
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
	batch.JobScheduleSpec
	ExecutionInfo jobScheduleExecutionOut `json:"executionInfo"`
}

type recentJobOut struct {
	ID  string `json:"id"`
	URL string `json:"url"`
}

type jobScheduleExecutionOut struct {
	NextRunTime *time.Time    `json:"nextRunTime,omitempty"`
	RecentJob   *recentJobOut `json:"recentJob,omitempty"`
	EndTime     *time.Time    `json:"endTime,omitempty"`
}

func (q *batchRequest) jobScheduleURL(id string) string {
	return q.baseURL() + "/jobschedules/" + escapeID(id)
}

func (q *batchRequest) jobScheduleBody(s *batch.JobSchedule, withMetadata bool) jobScheduleOut {
	out := jobScheduleOut{
		ID: s.ID, URL: q.jobScheduleURL(s.ID), ETag: s.ETag, LastModified: s.LastModified, CreationTime: s.CreationTime,
		State: s.State, StateTransitionTime: s.StateTransitionTime, PreviousState: s.PreviousState,
		PreviousStateTransitionTime: optTime(s.PreviousStateTransitionTime), JobScheduleSpec: s.Spec,
		ExecutionInfo: jobScheduleExecutionOut{EndTime: optTime(s.EndTime)},
	}
	// nextRunTime is meaningful only while the schedule may still run.
	if s.State == batch.ScheduleActive || s.State == batch.ScheduleDisabled {
		out.ExecutionInfo.NextRunTime = optTime(s.NextRunTime)
	}
	if s.RecentJobID != "" {
		out.ExecutionInfo.RecentJob = &recentJobOut{ID: s.RecentJobID, URL: q.jobURL(s.RecentJobID)}
	}
	if withMetadata {
		out.Metadata = q.metadata("jobschedules/@Element")
	}
	return out
}

func (b *batchData) addJobSchedule(q *batchRequest) error {
	var in jobScheduleIn
	if err := q.decode(&in); err != nil {
		return err
	}
	s, err := b.data.AddJobSchedule(q.ctx, q.account.Name, in.ID, in.JobScheduleSpec)
	if err != nil {
		return err
	}
	return q.created(s.ETag, s.LastModified, q.jobScheduleURL(s.ID))
}

func (b *batchData) getJobSchedule(q *batchRequest) error {
	s, err := b.data.GetJobSchedule(q.ctx, q.account.Name, q.segment(1))
	if err != nil {
		return err
	}
	return q.writeEntity(q.jobScheduleBody(s, true), s.ETag, s.LastModified)
}

func (b *batchData) listJobSchedules(q *batchRequest) error {
	lq, err := q.listQuery()
	if err != nil {
		return err
	}
	ss, next, err := b.data.ListJobSchedules(q.ctx, q.account.Name, lq)
	if err != nil {
		return err
	}
	items := make([]any, len(ss))
	for i, s := range ss {
		items[i] = q.jobScheduleBody(s, false)
	}
	return q.writeList("jobschedules", items, next)
}

func (b *batchData) listScheduleJobs(q *batchRequest) error {
	lq, err := q.listQuery()
	if err != nil {
		return err
	}
	js, next, err := b.data.ListScheduleJobs(q.ctx, q.account.Name, q.segment(1), lq)
	if err != nil {
		return err
	}
	items := make([]any, len(js))
	for i, j := range js {
		items[i] = q.jobBody(j, false)
	}
	return q.writeList("jobs", items, next)
}

// jobScheduleChanged answers a schedule change with ETag, Last-Modified
// and DataServiceId, no body.
func (q *batchRequest) jobScheduleChanged(s *batch.JobSchedule, status int) error {
	q.entityHeaders(s.ETag, s.LastModified, q.jobScheduleURL(s.ID))
	return q.noBody(status)
}

func (b *batchData) replaceJobSchedule(q *batchRequest) error {
	var in batch.JobScheduleUpdate
	if err := q.decode(&in); err != nil {
		return err
	}
	s, err := b.data.ReplaceJobSchedule(q.ctx, q.account.Name, q.segment(1), q.ifMatch(), in)
	if err != nil {
		return err
	}
	return q.jobScheduleChanged(s, http.StatusOK)
}

func (b *batchData) updateJobSchedule(q *batchRequest) error {
	var in batch.JobScheduleUpdate
	if err := q.decode(&in); err != nil {
		return err
	}
	s, err := b.data.UpdateJobSchedule(q.ctx, q.account.Name, q.segment(1), q.ifMatch(), in)
	if err != nil {
		return err
	}
	return q.jobScheduleChanged(s, http.StatusOK)
}

func (b *batchData) deleteJobSchedule(q *batchRequest) error {
	if err := b.data.DeleteJobSchedule(q.ctx, q.account.Name, q.segment(1), q.ifMatch()); err != nil {
		return err
	}
	return q.noBody(http.StatusAccepted)
}

func (b *batchData) disableJobSchedule(q *batchRequest) error {
	s, err := b.data.DisableJobSchedule(q.ctx, q.account.Name, q.segment(1), q.ifMatch())
	if err != nil {
		return err
	}
	return q.jobScheduleChanged(s, http.StatusNoContent)
}

func (b *batchData) enableJobSchedule(q *batchRequest) error {
	s, err := b.data.EnableJobSchedule(q.ctx, q.account.Name, q.segment(1), q.ifMatch())
	if err != nil {
		return err
	}
	return q.jobScheduleChanged(s, http.StatusNoContent)
}

func (b *batchData) terminateJobSchedule(q *batchRequest) error {
	s, err := b.data.TerminateJobSchedule(q.ctx, q.account.Name, q.segment(1), q.ifMatch())
	if err != nil {
		return err
	}
	return q.jobScheduleChanged(s, http.StatusAccepted)
}
