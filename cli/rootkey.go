package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"custody/hsm"
	"custody/secret"
	"custody/server"
)

// rootKeyCmd is `custody root-key`: create a root key in a PKCS#11 token,
// and move every server secret from one root key to another.
func (a *app) rootKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "root-key", Short: "Manage the server's root key: create one in a PKCS#11 token (HSM), migrate between root keys"}
	var uri string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Generate the root key in a PKCS#11 token (sensitive, not extractable), unless it exists",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !hsm.IsURI(uri) {
				return fmt.Errorf("--root-key %q is not a PKCS#11 URI: give pkcs11:token=...;object=...?module-path=...&pin-source=... (a file root key needs no init)", uri)
			}
			created, err := secret.InitTokenRoot(uri)
			if err != nil {
				return err
			}
			u, _ := hsm.ParseURI(uri)
			if created {
				fmt.Fprintf(cmd.ErrOrStderr(), "Created root key %q in the token (%s).\n", u.Object, u)
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "The token already holds root key %q (%s); kept it.\n", u.Object, u)
			}
			return nil
		},
	}
	initCmd.Flags().StringVar(&uri, "root-key", "", "PKCS#11 URI of the root key to create (pkcs11:token=LABEL;object=LABEL?module-path=LIB&pin-source=FILE)")
	initCmd.MarkFlagRequired("root-key")

	var mc server.MigrateConfig
	var verbose bool
	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Re-seal every server secret from one root key to another, all or nothing (stop the server first; run again after a crash)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("from") || !cmd.Flags().Changed("to") {
				return fmt.Errorf("give both --from and --to (a PKCS#11 URI, a root key file, or \"\" for the default: env %s, else {data-dir}/%s)", secret.RootKeyEnv, secret.RootKeyFile)
			}
			mc.DataDir = a.dataDir
			out := cmd.ErrOrStderr()
			if verbose {
				mc.Each = func(done, total int, what string) {
					fmt.Fprintf(cmd.OutOrStdout(), "re-sealed %d/%d: %s\n", done, total, what)
				}
			}
			res, err := server.MigrateRootKey(cmd.Context(), mc)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Re-sealed %d of %d secrets from %s to %s (the others were already under it).\n", res.Changed, res.Total, res.From, res.To)
			fmt.Fprintf(out, "Start the server with --root-key '%s' from now on. The old root key opens nothing the database holds now; keep it only as long as older database backups or key backups made before this migration must stay readable.\n", res.To)
			return nil
		},
	}
	f := migrate.Flags()
	f.StringVar(&mc.From, "from", "", "the root key the secrets are sealed under now: a PKCS#11 URI, a file, or \"\" for the default (env CUSTODY_ROOT_KEY, else {data-dir}/root.key)")
	f.StringVar(&mc.To, "to", "", "the root key to seal them under: a PKCS#11 URI (create the key first with `custody root-key init`) or a file (created with a new key if absent)")
	f.StringVar(&mc.Database, "database", "", "the server's postgres://... URL, if it runs on PostgreSQL (default: the SQLite database in --data-dir)")
	f.BoolVar(&verbose, "verbose", false, "print each secret (its table and row, never its value) as it is re-sealed")
	cmd.AddCommand(initCmd, migrate)
	return cmd
}
