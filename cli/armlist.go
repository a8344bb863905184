package cli

import "github.com/spf13/cobra"

// armListCmd builds the `list` command of a resource type: by resource group
// with -g, else across the subscription. each reshapes every item as az
// prints it; table is the -o table view (nil for the default).
func (a *app) armListCmd(short, resourceType, apiVersion string, each func(any) any, table func(any) any) *cobra.Command {
	var group string
	cmd := &cobra.Command{
		Use:   "list",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			path := c.subscriptionPath() + "/providers/" + resourceType
			if group != "" {
				path = c.groupPath(group) + "/providers/" + resourceType
			}
			all, err := c.armList(cmd.Context(), path, apiVersion, nil)
			if err != nil {
				return err
			}
			for i := range all {
				all[i] = each(all[i])
			}
			return a.print(all, table)
		},
	}
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "name of the resource group (default: the whole subscription)")
	return cmd
}
