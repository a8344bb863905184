package cli

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// Batch certificates, with az's names and flags (az batch certificate
// create|show|list|delete). A .pfx file is uploaded with its password; any
// other file is a public certificate (cer), DER or PEM, whose SHA-1
// thumbprint is computed when --thumbprint is not given.

func (a *app) batchCertificateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "certificate", Short: "Manage the account's certificates"}
	cmd.AddCommand(a.certCreateCmd(), a.certShowCmd(), a.certListCmd(), a.certDeleteCmd())
	return cmd
}

// certificateTable is the table for certificates.
func certificateTable(v any) any {
	return rows(v, func(m map[string]any) row {
		return newRow("Thumbprint", m["thumbprint"], "ThumbprintAlgorithm", m["thumbprintAlgorithm"],
			"State", m["state"], "Format", m["certificateFormat"])
	})
}

// certPath is /certificates(thumbprintAlgorithm={alg},thumbprint={tp}).
func certPath(alg, tp string) string {
	return "/certificates(thumbprintAlgorithm=" + alg + ",thumbprint=" + tp + ")"
}

// thumbprintFlags are --thumbprint and --thumbprint-algorithm.
type thumbprintFlags struct{ tp, alg string }

func (f *thumbprintFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.tp, "thumbprint", "", "the certificate's thumbprint (hexadecimal)")
	cmd.Flags().StringVar(&f.alg, "thumbprint-algorithm", "sha1", "the thumbprint algorithm: sha1")
}

// check validates and normalizes the flags; required says --thumbprint
// must be given.
func (f *thumbprintFlags) check(required bool) error {
	if !strings.EqualFold(f.alg, "sha1") {
		return fmt.Errorf("argument --thumbprint-algorithm: invalid choice: '%s' (choose from 'sha1')", f.alg)
	}
	f.alg = "sha1"
	f.tp = strings.ToLower(strings.NewReplacer(" ", "", ":", "").Replace(f.tp))
	if required {
		if err := requireFlag("--thumbprint", f.tp); err != nil {
			return err
		}
	}
	if f.tp != "" {
		if _, err := hex.DecodeString(f.tp); err != nil || len(f.tp) != 40 {
			return fmt.Errorf("argument --thumbprint: %q is not a SHA-1 thumbprint (40 hexadecimal digits)", f.tp)
		}
	}
	return nil
}

// readCertificateFile returns the certificate's format (pfx or cer) and
// its bytes as the Batch API takes them: a pfx as it is, a cer as DER.
func readCertificateFile(path string) (format string, data []byte, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("--certificate-file: %w", err)
	}
	if strings.EqualFold(filepath.Ext(path), ".pfx") || strings.EqualFold(filepath.Ext(path), ".p12") {
		return "pfx", b, nil
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return "", nil, fmt.Errorf("--certificate-file: %s holds a PEM %q block; give a certificate (cer or PEM CERTIFICATE), or a .pfx file with --password", path, blk.Type)
		}
		b = blk.Bytes
	}
	if _, err := x509.ParseCertificate(b); err != nil {
		return "", nil, fmt.Errorf("--certificate-file: %s is not an X.509 certificate (DER or PEM); a file with a private key must be a .pfx with --password", path)
	}
	return "cer", b, nil
}

func (a *app) certCreateCmd() *cobra.Command {
	var t batchTarget
	var f thumbprintFlags
	var file, password string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Add a certificate to the account",
		Example: `  custody batch certificate create --certificate-file server.cer --account-name mybatchaccount
  custody batch certificate create --certificate-file server.pfx --password "$PFX_PASSWORD" --thumbprint 0123...cdef`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--certificate-file", file); err != nil {
				return err
			}
			format, data, err := readCertificateFile(file)
			if err != nil {
				return err
			}
			if err := f.check(format == "pfx"); err != nil {
				if format == "pfx" && f.tp == "" {
					return errors.New("the following arguments are required: --thumbprint (the pfx certificate's SHA-1 thumbprint)")
				}
				return err
			}
			body := map[string]any{"thumbprintAlgorithm": f.alg, "certificateFormat": format,
				"data": base64.StdEncoding.EncodeToString(data)}
			switch format {
			case "pfx":
				if err := requireFlag("--password", password); err != nil {
					return err
				}
				body["password"] = password
			case "cer":
				if password != "" {
					return errors.New("--password is for pfx files; a cer certificate has no private key")
				}
				sum := sha1.Sum(data)
				if got := hex.EncodeToString(sum[:]); f.tp == "" {
					f.tp = got
				} else if f.tp != got {
					return fmt.Errorf("argument --thumbprint: %s does not match the certificate, whose SHA-1 thumbprint is %s", f.tp, got)
				}
			}
			body["thumbprint"] = f.tp
			if _, _, err := a.data(cmd.Context(), &t, http.MethodPost, "/certificates", body); err != nil {
				return err
			}
			v, _, err := a.data(cmd.Context(), &t, http.MethodGet, certPath(f.alg, f.tp), nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), certificateTable)
		},
	}
	t.flags(cmd)
	cmd.Flags().StringVar(&file, "certificate-file", "", "the certificate file: .pfx (with --password) or .cer (DER or PEM)")
	cmd.Flags().StringVar(&password, "password", "", "the pfx file's password")
	f.add(cmd)
	return cmd
}

func (a *app) certShowCmd() *cobra.Command {
	var t batchTarget
	var f thumbprintFlags
	cmd := &cobra.Command{Use: "show", Short: "Show a certificate", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(true); err != nil {
				return err
			}
			v, _, err := a.data(cmd.Context(), &t, http.MethodGet, certPath(f.alg, f.tp), nil)
			if err != nil {
				return err
			}
			return a.print(stripMetadata(v), certificateTable)
		}}
	t.flags(cmd)
	f.add(cmd)
	return cmd
}

func (a *app) certListCmd() *cobra.Command {
	var t batchTarget
	var lq listQueryFlags
	cmd := &cobra.Command{Use: "list", Short: "List the account's certificates", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := a.dataListAll(cmd.Context(), &t, withQuery("/certificates", lq.values()))
			if err != nil {
				return err
			}
			return a.print(l, certificateTable)
		}}
	t.flags(cmd)
	lq.add(cmd)
	return cmd
}

func (a *app) certDeleteCmd() *cobra.Command {
	var t batchTarget
	var f thumbprintFlags
	var yes bool
	cmd := &cobra.Command{Use: "delete", Short: "Delete a certificate", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(true); err != nil {
				return err
			}
			if err := a.confirm(yes); err != nil {
				return err
			}
			_, _, err := a.data(cmd.Context(), &t, http.MethodDelete, certPath(f.alg, f.tp), nil)
			return err
		}}
	t.flags(cmd)
	f.add(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	return cmd
}
