package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// appCmd is az ad app's subset: federated identity credentials of an
// application (here one principal with its service principal).
func (a *app) appCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "app", Short: "Manage applications (their federated identity credentials)"}
	fc := &cobra.Command{Use: "federated-credential", Short: "Manage an application's federated identity credentials: trust another issuer's tokens for it"}
	fc.AddCommand(a.fcCreateCmd(), a.fcListCmd(), a.fcShowCmd(), a.fcDeleteCmd())
	cmd.AddCommand(fc)
	return cmd
}

var fcTable = tableOf(func(m map[string]any) row {
	return newRow("Name", m["name"], "Issuer", m["issuer"], "Subject", m["subject"], "Id", m["id"])
})

// fcParameters reads --parameters: JSON inline or @file.
func fcParameters(p string) (map[string]any, error) {
	data := []byte(p)
	if name, ok := strings.CutPrefix(p, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("--parameters: %w", err)
		}
		data = b
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf(`--parameters: give a JSON object {"name", "issuer", "subject", "audiences": ["api://AzureADTokenExchange"]}, inline or as @file: %v`, err)
	}
	return m, nil
}

func (a *app) fcCreateCmd() *cobra.Command {
	var id, params string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Add a federated identity credential: the issuer, subject and audience of the tokens that sign the application in",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--id", id); err != nil {
				return err
			}
			if err := requireFlag("--parameters", params); err != nil {
				return err
			}
			body, err := fcParameters(params)
			if err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.graph(cmd.Context(), http.MethodPost, "/applications/"+id+"/federatedIdentityCredentials", nil, body)
			if err != nil {
				return err
			}
			return a.print(out, fcTable)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "app id or object id of the application")
	cmd.Flags().StringVar(&params, "parameters", "", `the credential, JSON inline or @file: {"name", "issuer", "subject", "audiences": ["api://AzureADTokenExchange"], "description"}`)
	return cmd
}

func (a *app) fcListCmd() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List an application's federated identity credentials",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--id", id); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.graph(cmd.Context(), http.MethodGet, "/applications/"+id+"/federatedIdentityCredentials", nil, nil)
			if err != nil {
				return err
			}
			m, _ := out.(map[string]any)
			vals, _ := m["value"].([]any)
			if vals == nil {
				vals = []any{}
			}
			return a.print(vals, fcTable)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "app id or object id of the application")
	return cmd
}

func (a *app) fcShowCmd() *cobra.Command {
	var id, fid string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a federated identity credential by id or name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--id", id); err != nil {
				return err
			}
			if err := requireFlag("--federated-credential-id", fid); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.graph(cmd.Context(), http.MethodGet, "/applications/"+id+"/federatedIdentityCredentials/"+fid, nil, nil)
			if err != nil {
				return err
			}
			return a.print(out, fcTable)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "app id or object id of the application")
	cmd.Flags().StringVar(&fid, "federated-credential-id", "", "the credential's id or name")
	return cmd
}

func (a *app) fcDeleteCmd() *cobra.Command {
	var id, fid string
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a federated identity credential by id or name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--id", id); err != nil {
				return err
			}
			if err := requireFlag("--federated-credential-id", fid); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			_, err = c.graph(cmd.Context(), http.MethodDelete, "/applications/"+id+"/federatedIdentityCredentials/"+fid, nil, nil)
			return err
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "app id or object id of the application")
	cmd.Flags().StringVar(&fid, "federated-credential-id", "", "the credential's id or name")
	return cmd
}
