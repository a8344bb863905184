package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) batchAccountReencryptCmd() *cobra.Command {
	var name, group string
	var wait bool
	cmd := &cobra.Command{
		Use:   "reencrypt",
		Short: "Re-encrypt a batch account's data under a new data key (a Custody extension)",
		Long: `Re-encrypt every record of a batch account (jobs, tasks, job schedules,
certificates, pools) under a new data encryption key, in the background.
Use it when the account's data key itself may have been exposed; a change of
the customer-managed key only rewraps the data key. Reads and writes go on
while it runs; when it finishes the old data key is deleted. Progress is in
properties.reencryption of the account (custody batch account show). With
--wait the command follows it to the end: a progress bar on a terminal,
a line per change otherwise.`,
		Example: `  custody batch account reencrypt -n mybatchaccount -g rg1
  custody batch account reencrypt -n mybatchaccount -g rg1 --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			path, err := c.batchAccountPath(name, group)
			if err != nil {
				return err
			}
			out, resp, err := c.arm(ctx, http.MethodPost, path+"/reencrypt", apiBatch, nil, nil)
			if err != nil {
				return err
			}
			if !wait {
				return a.print(out, nil)
			}
			final, err := c.followReencryption(ctx, out, resp, newProgress(a.stderr))
			if err != nil {
				return err
			}
			return a.print(flattenBatchAccount(final), batchAccountTable)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "name of the batch account")
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "name of the resource group")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the re-encryption until it finishes, showing its progress on stderr")
	return cmd
}

// followReencryption polls the re-encryption's operation until it answers
// the account, reporting each state to p.
func (c *client) followReencryption(ctx context.Context, out any, resp *http.Response, p *progress) (any, error) {
	for resp != nil && resp.StatusCode == http.StatusAccepted {
		p.report(out)
		loc := resp.Header.Get("Location")
		if loc == "" {
			return out, nil
		}
		wait := time.Second
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			wait = time.Duration(s) * time.Second
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(wait, 5*time.Second)):
		}
		var err error
		if out, resp, err = c.call(ctx, http.MethodGet, loc, scopeManagement, nil); err != nil {
			return nil, err
		}
	}
	p.done(out)
	return out, nil
}

// progress shows a re-encryption's progress: a bar redrawn in place on a
// terminal, else one line each time the state changes.
type progress struct {
	w     io.Writer
	tty   bool
	last  string
	drawn bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// reencryptionFields reads properties.reencryption out of an operation or
// an account body.
func reencryptionFields(body any) (status string, done, total int64, eta string) {
	m, _ := body.(map[string]any)
	props, _ := m["properties"].(map[string]any)
	re, _ := props["reencryption"].(map[string]any)
	if re == nil {
		return "", 0, 0, ""
	}
	num := func(k string) int64 { f, _ := re[k].(float64); return int64(f) }
	status, _ = re["status"].(string)
	eta, _ = re["estimatedEndTime"].(string)
	return status, num("recordsDone"), num("recordsTotal"), eta
}

func (p *progress) report(body any) {
	status, done, total, eta := reencryptionFields(body)
	if status == "" {
		return
	}
	pct := 0
	if total > 0 {
		pct = int(done * 100 / total)
	}
	left := ""
	if t, err := time.Parse(time.RFC3339, eta); err == nil {
		if d := time.Until(t).Round(time.Second); d > 0 {
			left = ", about " + d.String() + " left"
		}
	}
	if p.tty {
		const width = 30
		fill := width * pct / 100
		fmt.Fprintf(p.w, "\r\x1b[K%s [%s%s] %3d%%  %d/%d records%s", status, strings.Repeat("#", fill), strings.Repeat(".", width-fill), pct, done, total, left)
		p.drawn = true
		return
	}
	line := fmt.Sprintf("%s: %d/%d records (%d%%)", status, done, total, pct)
	if line != p.last {
		fmt.Fprintln(p.w, line+left)
		p.last = line
	}
}

func (p *progress) done(body any) {
	status, done, total, _ := reencryptionFields(body)
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	if status != "" {
		fmt.Fprintf(p.w, "%s: %d/%d records re-encrypted; the old data key is deleted\n", status, done, total)
	}
}
