package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"custody/portal"
)

// portalCmd is `custody portal`: print a one-time link that signs the
// bootstrap admin in to the web portal. The link's token is stored (as its
// SHA-256) in the server's data directory, so only someone who can write
// there can make one.
func (a *app) portalCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "portal",
		Short: "Print a one-time link that signs the admin in to the web portal (valid 15 minutes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ep, err := loadEndpoint(a.dataDir)
			if err != nil {
				return err
			}
			base := "https://portal." + ep.Domain
			if ep.Port != 443 {
				base += ":" + strconv.Itoa(ep.Port)
			}
			link, err := portal.MintSignInLink(a.dataDir, base)
			if err != nil {
				return fmt.Errorf("cannot write a sign-in token into %s: %w", a.dataDir, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), link)
			fmt.Fprintf(cmd.ErrOrStderr(), "Open the link in a browser on this machine within %d minutes; it works once. The browser must trust the server's CA (%s).\n", int(portal.LinkTTL.Minutes()), ep.CAFile)
			return nil
		},
	}
}
