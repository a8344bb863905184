package portal

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"custody"
	"custody/batch"
	"custody/compute"
	"custody/node"
)

// Read views of a Batch account's pools, jobs and tasks. They need read
// access to the account, as the batch data plane's GETs do, and an account
// whose key is inaccessible answers with the same error as the API.

type poolRow struct {
	Pool  *compute.Pool
	Nodes []*compute.Node
}

type poolsData struct {
	accountData
	Pools []poolRow
}

func (p *Portal) notRunning() error {
	return custody.Errorf(custody.KindNotFound, "ComputeNotRunning", "The batch compute service is not running on this server, so there are no pools, jobs or tasks to show.")
}

func (p *Portal) poolsPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	a, err := p.account(ctx, s, r.PathValue("account"), actionBatchRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	pg := &page{Title: "Pools: " + a.Name, Session: s, Tabs: accountTabs(a.Name, "Pools"),
		Crumbs: []crumb{{Label: "Home", Href: "/"}, {Label: "Batch account " + a.Name, Href: "/batch/" + url.PathEscape(a.Name)}, {Label: "Pools", Current: true}}}
	d := poolsData{accountData: p.accountData(a)}
	status := http.StatusOK
	if p.cfg.Compute == nil {
		err = p.notRunning()
	} else {
		var pools []*compute.Pool
		if pools, err = p.cfg.Compute.ListPools(ctx, a.Name); err == nil {
			for _, pl := range pools {
				ns, _ := p.cfg.Compute.Nodes(ctx, a.Name, pl.ID)
				d.Pools = append(d.Pools, poolRow{Pool: pl, Nodes: ns})
			}
		}
	}
	if err != nil {
		pg.setError(err, "")
		status = statusOf(err)
	}
	pg.Data = d
	p.render(w, r, status, "pools", pg)
}

type jobsData struct {
	accountData
	Jobs []*batch.Job
}

func (p *Portal) jobsPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	a, err := p.account(ctx, s, r.PathValue("account"), actionBatchRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	pg := &page{Title: "Jobs: " + a.Name, Session: s, Tabs: accountTabs(a.Name, "Jobs"),
		Crumbs: []crumb{{Label: "Home", Href: "/"}, {Label: "Batch account " + a.Name, Href: "/batch/" + url.PathEscape(a.Name)}, {Label: "Jobs", Current: true}}}
	d := jobsData{accountData: p.accountData(a)}
	status := http.StatusOK
	if p.cfg.Data == nil {
		err = p.notRunning()
	} else {
		d.Jobs, _, err = p.cfg.Data.ListJobs(ctx, a.Name, batch.ListQuery{MaxResults: batch.MaxPageSize})
	}
	if err != nil {
		pg.setError(err, "")
		status = statusOf(err)
	}
	pg.Data = d
	p.render(w, r, status, "jobs", pg)
}

type jobData struct {
	accountData
	Job   *batch.Job
	Tasks []*batch.Task
}

func (p *Portal) jobPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	a, err := p.account(ctx, s, r.PathValue("account"), actionBatchRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	if p.cfg.Data == nil {
		p.fail(w, r, s, p.notRunning())
		return
	}
	jobID := r.PathValue("job")
	d := jobData{accountData: p.accountData(a)}
	if d.Job, err = p.cfg.Data.GetJob(ctx, a.Name, jobID); err == nil {
		d.Tasks, _, err = p.cfg.Data.ListTasks(ctx, a.Name, jobID, batch.ListQuery{MaxResults: batch.MaxPageSize})
	}
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	pg := &page{Title: "Job " + jobID, Session: s, Tabs: accountTabs(a.Name, "Jobs"), Data: d,
		Crumbs: []crumb{{Label: "Home", Href: "/"}, {Label: "Batch account " + a.Name, Href: "/batch/" + url.PathEscape(a.Name)},
			{Label: "Jobs", Href: "/batch/" + url.PathEscape(a.Name) + "/jobs"}, {Label: "Job " + jobID, Current: true}}}
	p.render(w, r, http.StatusOK, "job", pg)
}

type taskData struct {
	accountData
	JobID  string
	Task   *batch.Task
	Files  []taskFile
	Reason string
}

type taskFile struct {
	Name string
	Text string
	Err  string
}

// maxOutput is how much of stdout.txt and stderr.txt a task page shows.
const maxOutput = 256 << 10

func (p *Portal) taskPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	a, err := p.account(ctx, s, r.PathValue("account"), actionBatchRead)
	if err != nil {
		p.fail(w, r, s, err)
		return
	}
	if p.cfg.Data == nil {
		p.fail(w, r, s, p.notRunning())
		return
	}
	jobID, taskID := r.PathValue("job"), r.PathValue("task")
	d := taskData{accountData: p.accountData(a), JobID: jobID}
	if d.Task, err = p.cfg.Data.GetTask(ctx, a.Name, jobID, taskID); err != nil {
		p.fail(w, r, s, err)
		return
	}
	if p.cfg.Compute != nil {
		for _, name := range []string{"stdout.txt", "stderr.txt"} {
			f, err := readTaskFile(ctx, p.cfg.Compute, a.Name, jobID, taskID, name)
			if errors.Is(err, compute.ErrNoNode) {
				d.Reason = "The task has not run on a node yet, so it has no output."
				break
			}
			if err != nil {
				d.Reason = custody.ErrorMessage(err)
				break
			}
			d.Files = append(d.Files, f)
		}
	}
	pg := &page{Title: "Task " + taskID, Session: s, Tabs: accountTabs(a.Name, "Jobs"), Data: d,
		Crumbs: []crumb{{Label: "Home", Href: "/"}, {Label: "Batch account " + a.Name, Href: "/batch/" + url.PathEscape(a.Name)},
			{Label: "Jobs", Href: "/batch/" + url.PathEscape(a.Name) + "/jobs"},
			{Label: "Job " + jobID, Href: "/batch/" + url.PathEscape(a.Name) + "/jobs/" + url.PathEscape(jobID)}, {Label: "Task " + taskID, Current: true}}}
	p.render(w, r, http.StatusOK, "task", pg)
}

// readTaskFile reads a file of a task's directory from its node, over the
// node channel, as the data plane's file routes do.
func readTaskFile(ctx context.Context, c *compute.Service, account, jobID, taskID, name string) (taskFile, error) {
	f := taskFile{Name: name}
	resp, err := c.TaskFile(ctx, account, jobID, taskID, node.FileRequest{Method: http.MethodGet, Path: name})
	if err != nil {
		return f, err
	}
	defer resp.Close()
	switch {
	case resp.Status == http.StatusNotFound:
		f.Err = "The task has not written " + name + " (yet)."
		return f, nil
	case resp.Status != http.StatusOK || resp.ContentLength < 0:
		f.Err = "The node answered " + strconv.Itoa(resp.Status) + " for " + name + "."
		return f, nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, min(resp.ContentLength, maxOutput+1)))
	if len(b) > maxOutput {
		b = b[:maxOutput]
		f.Err = "Only the first 256 KiB are shown."
	}
	if !utf8.Valid(b) {
		b = []byte(strings.ToValidUTF8(string(b), "\uFFFD"))
	}
	f.Text = string(b)
	return f, nil
}
