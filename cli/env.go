package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

	"custody/server"

	"github.com/spf13/cobra"
)

// envVar is one variable `custody env` prints.
type envVar struct{ name, value string }

// shellQuote quotes s for POSIX shells.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (a *app) envCmd() *cobra.Command {
	var azLines bool
	cmd := &cobra.Command{
		Use:   "env",
		Short: "Print shell exports that let Azure SDK programs use this server",
		Long: `Print export lines for the signed-in service principal (or the admin) so that
Azure SDK programs (azidentity's EnvironmentCredential and DefaultAzureCredential)
authenticate against this server and trust its CA:

  eval "$(custody env)"

With -o json, -o table or -o tsv the same values are printed in that format.

With --az it prints instead the lines that set up the real Azure CLI for this
server: the /etc/hosts lines it needs (as comments), REQUESTS_CA_BUNDLE, az
cloud register (from the server's cloud metadata document), az cloud set and az
login --service-principal. Run them in a shell, or eval them.`,
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
			if azLines {
				for _, l := range azSetupLines(ep, cred.ClientID, cred.ClientSecret, cred.TenantID) {
					fmt.Fprintln(a.stdout, l)
				}
				return nil
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
	cmd.Flags().BoolVar(&azLines, "az", false, "print the lines that set up the real az CLI for this server instead")
	return cmd
}

// AzureCLICloudName is the name `custody env --az` registers this server's
// cloud under in the az CLI.
const AzureCLICloudName = "Custody"

// azSetupLines returns the shell lines that point the real az CLI at the
// server ep and sign in as the given service principal. az resolves host
// names through the system resolver, so the names it dials must resolve to
// the server's address: the lines say which, as comments.
func azSetupLines(ep server.Endpoint, clientID, secret, tenant string) []string {
	ip := "127.0.0.1"
	if h, _, err := net.SplitHostPort(ep.Address); err == nil && h != "" && !net.ParseIP(h).IsUnspecified() {
		ip = h
	}
	port := ""
	if ep.Port != 443 {
		port = ":" + strconv.Itoa(ep.Port)
	}
	d := ep.Domain
	// az cloud register reads the login endpoint, token audience and graph
	// from the cloud metadata document of the resource manager; the
	// Microsoft Graph endpoint, batch resource and vault suffix it takes
	// from the cloud configuration.
	config, _ := json.Marshal(map[string]any{
		"endpoints": map[string]string{
			"resourceManager":          endpointURL(ep, "management"),
			"microsoftGraphResourceId": endpointURL(ep, "graph") + "/",
			"batchResourceId":          endpointURL(ep, "batch") + "/",
		},
		"suffixes": map[string]string{"keyvaultDns": ".vault." + d + port},
	})
	return []string{
		"# az resolves names with the system resolver: unless *." + d + " already resolves to " + ip + ", add to /etc/hosts",
		"#   " + ip + " login." + d + " management." + d + " graph." + d + " batch." + d,
		"# and one name per key vault and batch account, e.g.",
		"#   " + ip + " mykv.vault." + d + " mybatchaccount.batch." + d,
		"export REQUESTS_CA_BUNDLE=" + shellQuote(ep.CAFile),
		"az cloud register -n " + AzureCLICloudName + " --cloud-config " + shellQuote(string(config)),
		"az cloud set -n " + AzureCLICloudName,
		"az login --service-principal -u " + shellQuote(clientID) + " -p " + shellQuote(secret) + " --tenant " + shellQuote(tenant),
	}
}
