package cli

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) groupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Manage resource groups"}
	cmd.AddCommand(a.groupCreateCmd(), a.groupShowCmd(), a.groupListCmd(), a.groupDeleteCmd(), a.groupExistsCmd())
	return cmd
}

// nameFlag adds az's -n/--name, with -g/--resource-group as a synonym
// (az accepts both for group commands).
func nameFlag(cmd *cobra.Command, name *string) {
	cmd.Flags().StringVarP(name, "name", "n", "", "name of the resource group")
	cmd.Flags().StringVarP(name, "resource-group", "g", "", "name of the resource group (same as --name)")
}

func requireFlag(name, value string) error {
	if value == "" {
		return fmt.Errorf("the following arguments are required: %s", name)
	}
	return nil
}

// tagArgs lets --tags take several space-separated values, as az's does:
// `--tags a=1 b=2` leaves b=2 as a positional argument, which is accepted
// only after --tags.
func tagArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 && !cmd.Flags().Changed("tags") {
		return fmt.Errorf("unrecognized arguments: %s", strings.Join(args, " "))
	}
	for _, x := range args {
		if strings.HasPrefix(x, "-") {
			return fmt.Errorf("unrecognized arguments: %s", x)
		}
	}
	return nil
}

// parseTags turns k=v values into a tag map; "" clears all tags.
func parseTags(vals, extra []string) map[string]string {
	tags := map[string]string{}
	for _, t := range append(append([]string{}, vals...), extra...) {
		if t == "" {
			continue
		}
		k, v, _ := strings.Cut(t, "=")
		tags[k] = v
	}
	return tags
}

func (c *client) groupPath(name string) string {
	return c.subscriptionPath() + "/resourcegroups/" + name
}

// groupTable is az's table for resource groups: Name, Location, Status.
var groupTable = tableOf(func(m map[string]any) row {
	props, _ := m["properties"].(map[string]any)
	return newRow("Name", m["name"], "Location", m["location"], "Status", props["provisioningState"])
})

func (a *app) groupCreateCmd() *cobra.Command {
	var name, location, managedBy string
	var tags []string
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create a new resource group, or update an existing one",
		Example: "  custody group create -n rg1 -l westus2 --tags env=dev team=batch",
		Args:    tagArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("--name/-n", name); err != nil {
				return err
			}
			if err := requireFlag("--location/-l", location); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			body := map[string]any{"location": location}
			if t := parseTags(tags, args); len(t) > 0 {
				body["tags"] = t
			}
			if managedBy != "" {
				body["managedBy"] = managedBy
			}
			out, _, err := c.arm(cmd.Context(), http.MethodPut, c.groupPath(name), apiResources, nil, body)
			if err != nil {
				return err
			}
			return a.print(out, groupTable)
		},
	}
	nameFlag(cmd, &name)
	cmd.Flags().StringVarP(&location, "location", "l", "", "location, e.g. westus2")
	cmd.Flags().StringArrayVar(&tags, "tags", nil, "space-separated tags: key[=value] [key[=value] ...]")
	cmd.Flags().StringVar(&managedBy, "managed-by", "", "id of the resource that manages this group")
	return cmd
}

func (a *app) groupShowCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Get a resource group",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--name/-n", name); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, _, err := c.arm(cmd.Context(), http.MethodGet, c.groupPath(name), apiResources, nil, nil)
			if err != nil {
				return err
			}
			return a.print(out, groupTable)
		},
	}
	nameFlag(cmd, &name)
	return cmd
}

func (a *app) groupListCmd() *cobra.Command {
	var tag string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List resource groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			all, err := c.armList(cmd.Context(), c.subscriptionPath()+"/resourcegroups", apiResources, nil)
			if err != nil {
				return err
			}
			if tag != "" {
				k, v, hasValue := strings.Cut(tag, "=")
				kept := []any{}
				for _, x := range all {
					m, _ := x.(map[string]any)
					tags, _ := m["tags"].(map[string]any)
					if got, ok := tags[k]; ok && (!hasValue || got == v) {
						kept = append(kept, x)
					}
				}
				all = kept
			}
			return a.print(all, groupTable)
		},
	}
	cmd.Flags().StringVar(&tag, "tag", "", "a single tag in key[=value] form to filter by")
	return cmd
}

func (a *app) groupDeleteCmd() *cobra.Command {
	var name string
	var yes, noWait bool
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a resource group and everything in it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--name/-n", name); err != nil {
				return err
			}
			if err := a.confirm(yes); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			_, resp, err := c.arm(cmd.Context(), http.MethodDelete, c.groupPath(name), apiResources, nil, nil)
			if err != nil || noWait {
				return err
			}
			return c.poll(cmd.Context(), resp)
		},
	}
	nameFlag(cmd, &name)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the long-running operation to finish")
	return cmd
}

func (a *app) groupExistsCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "exists",
		Short: "Check whether a resource group exists (prints true or false)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--name/-n", name); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			_, _, err = c.arm(cmd.Context(), http.MethodHead, c.groupPath(name), apiResources, nil, nil)
			if isStatus(err, http.StatusNotFound) {
				return a.print(false, nil)
			}
			if err != nil {
				return err
			}
			return a.print(true, nil)
		},
	}
	nameFlag(cmd, &name)
	return cmd
}

// resourceGroupOf returns the resource group named in a resource id.
func resourceGroupOf(id string) string {
	segs := strings.Split(id, "/")
	for i := 0; i+1 < len(segs); i++ {
		if strings.EqualFold(segs[i], "resourceGroups") {
			return segs[i+1]
		}
	}
	return ""
}
