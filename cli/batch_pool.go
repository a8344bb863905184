package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// Batch data-plane commands: pools, compute nodes and task files, with
// az's names (az batch pool|node|task file ...). The account comes from
// --account-name (env AZURE_BATCH_ACCOUNT); the endpoint is the account's
// host on this server unless --account-endpoint (env AZURE_BATCH_ENDPOINT)
// names another.

const batchScope = "https://batch.core.windows.net//.default"
const batchDataAPIVersion = "2024-07-01.20.0"

type batchTarget struct {
	account, endpoint string
}

func (t *batchTarget) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.account, "account-name", os.Getenv("AZURE_BATCH_ACCOUNT"), "the batch account name (env AZURE_BATCH_ACCOUNT)")
	cmd.Flags().StringVar(&t.endpoint, "account-endpoint", os.Getenv("AZURE_BATCH_ENDPOINT"), "the batch account endpoint (env AZURE_BATCH_ENDPOINT; default: the account's host on this server)")
}

// data calls the account's data plane at path (which may carry a query).
func (a *app) data(ctx context.Context, t *batchTarget, method, path string, in any) (any, *http.Response, error) {
	if err := requireFlag("--account-name", t.account); err != nil && t.endpoint == "" {
		return nil, nil, err
	}
	c, err := a.client(ctx)
	if err != nil {
		return nil, nil, err
	}
	base := t.endpoint
	if base == "" {
		base = c.url(strings.ToLower(t.account) + ".batch")
	} else if !strings.HasPrefix(base, "https://") {
		base = "https://" + base
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return c.call(ctx, method, strings.TrimRight(base, "/")+path+sep+"api-version="+batchDataAPIVersion, batchScope, in)
}

func (a *app) dataList(ctx context.Context, t *batchTarget, path string) ([]any, error) {
	v, _, err := a.data(ctx, t, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	items, _ := m["value"].([]any)
	for _, it := range items {
		if o, ok := it.(map[string]any); ok {
			delete(o, "odata.metadata")
		}
	}
	if items == nil {
		items = []any{}
	}
	return items, nil
}

func stripMetadata(v any) any {
	if m, ok := v.(map[string]any); ok {
		delete(m, "odata.metadata")
	}
	return v
}

func poolTable(v any) any {
	one := func(x any) row {
		m, _ := x.(map[string]any)
		return newRow("Id", m["id"], "State", m["state"], "AllocationState", m["allocationState"], "VmSize", m["vmSize"],
			"Dedicated", m["currentDedicatedNodes"], "TargetDedicated", m["targetDedicatedNodes"])
	}
	if l, ok := v.([]any); ok {
		out := make([]row, len(l))
		for i, x := range l {
			out[i] = one(x)
		}
		return out
	}
	return []row{one(v)}
}

func nodeTable(v any) any {
	one := func(x any) row {
		m, _ := x.(map[string]any)
		return newRow("Id", m["id"], "State", m["state"], "SchedulingState", m["schedulingState"], "RunningTasks", m["runningTasksCount"], "TotalTasksRun", m["totalTasksRun"])
	}
	if l, ok := v.([]any); ok {
		out := make([]row, len(l))
		for i, x := range l {
			out[i] = one(x)
		}
		return out
	}
	return []row{one(v)}
}

func parseNameValues(list []string) ([]map[string]string, error) {
	var out []map[string]string
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not NAME=VALUE", kv)
		}
		out = append(out, map[string]string{"name": k, "value": v})
	}
	return out, nil
}

func (a *app) batchPoolCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "pool", Short: "Manage pools of compute nodes"}
	cmd.AddCommand(a.poolCreateCmd(), a.poolShowCmd(), a.poolListCmd(), a.poolSetCmd(), a.poolDeleteCmd(), a.poolResizeCmd())
	return cmd
}

func (a *app) poolCreateCmd() *cobra.Command {
	var t batchTarget
	var id, vmSize, startCmd string
	var nodes, slots int
	var wait bool
	var metadata, env []string
	cmd := &cobra.Command{
		Use: "create", Short: "Create a pool; the server starts its nodes",
		Example: "  custody batch pool create --id p1 --vm-size Standard_D2s_v3 --target-dedicated-nodes 2 --account-name mybatchaccount",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--id", id); err != nil {
				return err
			}
			if err := requireFlag("--vm-size", vmSize); err != nil {
				return err
			}
			body := map[string]any{"id": id, "vmSize": vmSize, "targetDedicatedNodes": nodes}
			if slots > 0 {
				body["taskSlotsPerNode"] = slots
			}
			if len(metadata) > 0 {
				md, err := parseNameValues(metadata)
				if err != nil {
					return fmt.Errorf("--metadata: %w", err)
				}
				body["metadata"] = md
			}
			if startCmd != "" {
				st := map[string]any{"commandLine": startCmd, "waitForSuccess": wait}
				if len(env) > 0 {
					e, err := parseNameValues(env)
					if err != nil {
						return fmt.Errorf("--start-task-environment-settings: %w", err)
					}
					st["environmentSettings"] = e
				}
				body["startTask"] = st
			}
			if _, _, err := a.data(cmd.Context(), &t, http.MethodPost, "/pools", body); err != nil {
				return err
			}
			v, _, err := a.data(cmd.Context(), &t, http.MethodGet, "/pools/"+url.PathEscape(id), nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), poolTable)
		},
	}
	t.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "the pool id")
	f.StringVar(&vmSize, "vm-size", "", "the node size (for example Standard_D2s_v3)")
	f.IntVar(&nodes, "target-dedicated-nodes", 0, "the number of nodes")
	f.IntVar(&slots, "task-slots-per-node", 0, "task slots per node (default 1)")
	f.StringVar(&startCmd, "start-task-command-line", "", "the start task's command line")
	f.BoolVar(&wait, "start-task-wait-for-success", true, "nodes wait for the start task before taking work")
	f.StringSliceVar(&env, "start-task-environment-settings", nil, "NAME=VALUE environment settings of the start task")
	f.StringSliceVar(&metadata, "metadata", nil, "NAME=VALUE metadata")
	return cmd
}

func (a *app) poolShowCmd() *cobra.Command {
	var t batchTarget
	var id string
	cmd := &cobra.Command{Use: "show", Short: "Show a pool", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--pool-id", id); err != nil {
				return err
			}
			v, _, err := a.data(cmd.Context(), &t, http.MethodGet, "/pools/"+url.PathEscape(id), nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), poolTable)
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "pool-id", "", "the pool id")
	return cmd
}

func (a *app) poolListCmd() *cobra.Command {
	var t batchTarget
	cmd := &cobra.Command{Use: "list", Short: "List the account's pools", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := a.dataList(cmd.Context(), &t, "/pools")
			if err != nil {
				return err
			}
			return a.print(l, poolTable)
		}}
	t.flags(cmd)
	return cmd
}

func (a *app) poolSetCmd() *cobra.Command {
	var t batchTarget
	var id, startCmd string
	var metadata []string
	cmd := &cobra.Command{Use: "set", Short: "Update a pool's properties (metadata, start task)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--pool-id", id); err != nil {
				return err
			}
			body := map[string]any{}
			if cmd.Flags().Changed("metadata") {
				md, err := parseNameValues(metadata)
				if err != nil {
					return fmt.Errorf("--metadata: %w", err)
				}
				body["metadata"] = md
			}
			if startCmd != "" {
				body["startTask"] = map[string]any{"commandLine": startCmd}
			}
			if _, _, err := a.data(cmd.Context(), &t, http.MethodPatch, "/pools/"+url.PathEscape(id), body); err != nil {
				return err
			}
			v, _, err := a.data(cmd.Context(), &t, http.MethodGet, "/pools/"+url.PathEscape(id), nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), poolTable)
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "pool-id", "", "the pool id")
	cmd.Flags().StringSliceVar(&metadata, "metadata", nil, "NAME=VALUE metadata (replaces it)")
	cmd.Flags().StringVar(&startCmd, "start-task-command-line", "", "a new start task command line")
	return cmd
}

func (a *app) poolDeleteCmd() *cobra.Command {
	var t batchTarget
	var id string
	var yes bool
	cmd := &cobra.Command{Use: "delete", Short: "Delete a pool; its nodes leave and their tasks are requeued", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--pool-id", id); err != nil {
				return err
			}
			if err := a.confirm(yes); err != nil {
				return err
			}
			_, _, err := a.data(cmd.Context(), &t, http.MethodDelete, "/pools/"+url.PathEscape(id), nil)
			return err
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "pool-id", "", "the pool id")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	return cmd
}

func (a *app) poolResizeCmd() *cobra.Command {
	var t batchTarget
	var id string
	var nodes int
	var abort bool
	cmd := &cobra.Command{Use: "resize", Short: "Resize a pool (or stop a resize with --abort)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--pool-id", id); err != nil {
				return err
			}
			path := "/pools/" + url.PathEscape(id)
			if abort {
				_, _, err := a.data(cmd.Context(), &t, http.MethodPost, path+"/stopresize", nil)
				return err
			}
			if _, _, err := a.data(cmd.Context(), &t, http.MethodPost, path+"/resize", map[string]any{"targetDedicatedNodes": nodes}); err != nil {
				return err
			}
			v, _, err := a.data(cmd.Context(), &t, http.MethodGet, path, nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), poolTable)
		}}
	t.flags(cmd)
	cmd.Flags().StringVar(&id, "pool-id", "", "the pool id")
	cmd.Flags().IntVar(&nodes, "target-dedicated-nodes", 0, "the new number of nodes")
	cmd.Flags().BoolVar(&abort, "abort", false, "stop the pool's resize")
	return cmd
}

func (a *app) batchNodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Manage compute nodes"}
	var t1, t2, t3, t4 batchTarget
	var pool, node string
	var nodes []string
	list := &cobra.Command{Use: "list", Short: "List a pool's nodes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--pool-id", pool); err != nil {
				return err
			}
			l, err := a.dataList(cmd.Context(), &t1, "/pools/"+url.PathEscape(pool)+"/nodes")
			if err != nil {
				return err
			}
			return a.print(l, nodeTable)
		}}
	show := &cobra.Command{Use: "show", Short: "Show a node", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--node-id", node); err != nil {
				return err
			}
			v, _, err := a.data(cmd.Context(), &t2, http.MethodGet, "/pools/"+url.PathEscape(pool)+"/nodes/"+url.PathEscape(node), nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), nodeTable)
		}}
	reboot := &cobra.Command{Use: "reboot", Short: "Reboot a node: its tasks are requeued and its start task runs again", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--node-id", node); err != nil {
				return err
			}
			_, _, err := a.data(cmd.Context(), &t3, http.MethodPost, "/pools/"+url.PathEscape(pool)+"/nodes/"+url.PathEscape(node)+"/reboot", map[string]any{})
			return err
		}}
	del := &cobra.Command{Use: "delete", Short: "Remove nodes from a pool (az batch node delete)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(nodes) == 0 {
				return requireFlag("--node-list", "")
			}
			_, _, err := a.data(cmd.Context(), &t4, http.MethodPost, "/pools/"+url.PathEscape(pool)+"/removenodes", map[string]any{"nodeList": nodes})
			return err
		}}
	for i, c := range []*cobra.Command{list, show, reboot, del} {
		[]*batchTarget{&t1, &t2, &t3, &t4}[i].flags(c)
		c.Flags().StringVar(&pool, "pool-id", "", "the pool id")
	}
	for _, c := range []*cobra.Command{show, reboot} {
		c.Flags().StringVar(&node, "node-id", "", "the node id")
	}
	del.Flags().StringSliceVar(&nodes, "node-list", nil, "ids of the nodes to remove")
	cmd.AddCommand(list, show, reboot, del)
	return cmd
}

func (a *app) batchTaskCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "task", Short: "Work with tasks"}
	file := &cobra.Command{Use: "file", Short: "List and download a task's files (stdout.txt, stderr.txt, wd/...)"}
	var t1, t2 batchTarget
	var job, task, path, dest string
	var recursive bool
	list := &cobra.Command{Use: "list", Short: "List a task's files", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--job-id", job); err != nil {
				return err
			}
			if err := requireFlag("--task-id", task); err != nil {
				return err
			}
			p := "/jobs/" + url.PathEscape(job) + "/tasks/" + url.PathEscape(task) + "/files"
			if recursive {
				p += "?recursive=true"
			}
			l, err := a.dataList(cmd.Context(), &t1, p)
			if err != nil {
				return err
			}
			return a.print(l, nil)
		}}
	download := &cobra.Command{Use: "download", Short: "Download one of a task's files", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range [][2]string{{"--job-id", job}, {"--task-id", task}, {"--file-path", path}, {"--destination", dest}} {
				if err := requireFlag(f[0], f[1]); err != nil {
					return err
				}
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			base := t2.endpoint
			if base == "" {
				if err := requireFlag("--account-name", t2.account); err != nil {
					return err
				}
				base = c.url(strings.ToLower(t2.account) + ".batch")
			}
			u := strings.TrimRight(base, "/") + "/jobs/" + url.PathEscape(job) + "/tasks/" + url.PathEscape(task) + "/files/" + url.PathEscape(path) + "?api-version=" + batchDataAPIVersion
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			tok, err := c.token(cmd.Context(), batchScope)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, body, err := c.do(req)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return decodeError(resp, body)
			}
			if st, err := os.Stat(dest); err == nil && st.IsDir() {
				dest = filepath.Join(dest, filepath.Base(path))
			}
			return os.WriteFile(dest, body, 0o644)
		}}
	t1.flags(list)
	t2.flags(download)
	for _, c := range []*cobra.Command{list, download} {
		c.Flags().StringVar(&job, "job-id", "", "the job id")
		c.Flags().StringVar(&task, "task-id", "", "the task id")
	}
	list.Flags().BoolVar(&recursive, "recursive", false, "list the working directory's files too")
	download.Flags().StringVar(&path, "file-path", "", "the file, relative to the task directory (stdout.txt, wd/out.txt)")
	download.Flags().StringVar(&dest, "destination", "", "the local file or directory to write")
	file.AddCommand(list, download)
	cmd.AddCommand(file)
	a.addTaskCommands(cmd)
	return cmd
}
