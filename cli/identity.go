package cli

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
)

const identityType = "Microsoft.ManagedIdentity/userAssignedIdentities"

func (a *app) identityCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "identity", Short: "Manage user-assigned managed identities"}
	cmd.AddCommand(a.identityCreateCmd(), a.identityShowCmd(), a.identityListCmd(), a.identityDeleteCmd())
	return cmd
}

// identityFlags adds -n/--name, -g/--resource-group and --ids.
func identityFlags(cmd *cobra.Command, name, group, ids *string) {
	cmd.Flags().StringVarP(name, "name", "n", "", "name of the identity")
	cmd.Flags().StringVarP(group, "resource-group", "g", "", "name of the resource group")
	if ids != nil {
		cmd.Flags().StringVar(ids, "ids", "", "resource id of the identity (instead of --name and --resource-group)")
	}
}

// identityPath returns the identity's resource path from --ids or -n/-g.
func (c *client) identityPath(name, group, ids string) (string, error) {
	if ids != "" {
		if !strings.Contains(strings.ToLower(ids), "/providers/"+strings.ToLower(identityType)+"/") {
			return "", errors.New("--ids: not a user-assigned identity resource id")
		}
		return ids, nil
	}
	if err := requireFlag("--resource-group/-g", group); err != nil {
		return "", err
	}
	if err := requireFlag("--name/-n", name); err != nil {
		return "", err
	}
	return c.groupPath(group) + "/providers/" + identityType + "/" + name, nil
}

// flattenIdentity gives an identity az's shape: properties (clientId,
// principalId, tenantId) at the top level, plus resourceGroup.
func flattenIdentity(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := map[string]any{}
	for k, x := range m {
		if k != "properties" {
			out[k] = x
		}
	}
	if props, ok := m["properties"].(map[string]any); ok {
		for k, x := range props {
			out[k] = x
		}
	}
	id, _ := m["id"].(string)
	out["resourceGroup"] = resourceGroupOf(id)
	return out
}

func (a *app) identityCreateCmd() *cobra.Command {
	var name, group, location string
	var tags []string
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create a user-assigned identity",
		Example: "  custody identity create -n id1 -g rg1",
		Args:    tagArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			path, err := c.identityPath(name, group, "")
			if err != nil {
				return err
			}
			if location == "" {
				// az defaults to the resource group's location.
				if location, err = c.groupLocation(ctx, group); err != nil {
					return err
				}
			}
			body := map[string]any{"location": location}
			if t := parseTags(tags, args); len(t) > 0 {
				body["tags"] = t
			}
			out, _, err := c.arm(ctx, http.MethodPut, path, apiIdentities, nil, body)
			if err != nil {
				return err
			}
			return a.print(flattenIdentity(out), nil)
		},
	}
	identityFlags(cmd, &name, &group, nil)
	cmd.Flags().StringVarP(&location, "location", "l", "", "location (default: the resource group's)")
	cmd.Flags().StringArrayVar(&tags, "tags", nil, "space-separated tags: key[=value] [key[=value] ...]")
	return cmd
}

func (c *client) groupLocation(ctx context.Context, group string) (string, error) {
	g, _, err := c.arm(ctx, http.MethodGet, c.groupPath(group), apiResources, nil, nil)
	if err != nil {
		return "", err
	}
	m, _ := g.(map[string]any)
	loc, _ := m["location"].(string)
	return loc, nil
}

func (a *app) identityShowCmd() *cobra.Command {
	var name, group, ids string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a user-assigned identity",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			path, err := c.identityPath(name, group, ids)
			if err != nil {
				return err
			}
			out, _, err := c.arm(cmd.Context(), http.MethodGet, path, apiIdentities, nil, nil)
			if err != nil {
				return err
			}
			return a.print(flattenIdentity(out), nil)
		},
	}
	identityFlags(cmd, &name, &group, &ids)
	return cmd
}

func (a *app) identityListCmd() *cobra.Command {
	return a.armListCmd("List user-assigned identities in a resource group, or in the whole subscription", identityType, apiIdentities, flattenIdentity, nil)
}

func (a *app) identityDeleteCmd() *cobra.Command {
	var name, group, ids string
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a user-assigned identity",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			path, err := c.identityPath(name, group, ids)
			if err != nil {
				return err
			}
			_, _, err = c.arm(cmd.Context(), http.MethodDelete, path, apiIdentities, nil, nil)
			return err
		},
	}
	identityFlags(cmd, &name, &group, &ids)
	return cmd
}
