package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// envVar is one variable `custody env` prints.
type envVar struct{ name, value string }

// shellQuote quotes s for POSIX shells.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (a *app) envCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "env",
		Short: "Print shell exports that let Azure SDK programs use this server",
		Long: `Print export lines for the signed-in service principal (or the admin) so that
Azure SDK programs (azidentity's EnvironmentCredential and DefaultAzureCredential)
authenticate against this server and trust its CA:

  eval "$(custody env)"

With -o json, -o table or -o tsv the same values are printed in that format.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cred, err := a.credentials()
			if err != nil {
				return err
			}
			ep, err := loadEndpoint(a.dataDir)
			if err != nil {
				return err
			}
			sub := cred.SubscriptionID
			if a.subscription != "" {
				c, err := a.client(cmd.Context())
				if err != nil {
					return err
				}
				sub = c.cred.SubscriptionID
			}
			vars := []envVar{
				{"AZURE_AUTHORITY_HOST", endpointURL(ep, "login")},
				{"AZURE_TENANT_ID", cred.TenantID},
				{"AZURE_CLIENT_ID", cred.ClientID},
				{"AZURE_CLIENT_SECRET", cred.ClientSecret},
				{"AZURE_SUBSCRIPTION_ID", sub},
				{"AZURE_RESOURCE_MANAGER_ENDPOINT", endpointURL(ep, "management")},
				{"SSL_CERT_FILE", ep.CAFile},
				{"CUSTODY_DATA_DIR", a.dataDir},
				{"CUSTODY_GRAPH_ENDPOINT", endpointURL(ep, "graph")},
			}
			if cmd.Flags().Changed("output") {
				m := map[string]any{}
				for _, v := range vars {
					m[v.name] = v.value
				}
				return a.print(m, nil)
			}
			for _, v := range vars {
				fmt.Fprintf(a.stdout, "export %s=%s\n", v.name, shellQuote(v.value))
			}
			return nil
		},
	}
}
