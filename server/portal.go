package server

import (
	"custody/batch"
	"custody/portal"
)

// openPortal serves the web portal on portal.{domain} and logs a one-time
// sign-in link for the bootstrap admin (`custody portal` prints a fresh
// one).
func (s *Server) openPortal() error {
	var data *batch.DataService
	if ds, ok := s.Batch.Data.(accountDataDeleters); ok {
		for _, d := range ds {
			if dd, ok := d.(*batch.DataService); ok {
				data = dd
			}
		}
	}
	p, err := portal.New(portal.Config{Identity: s.Identity, RM: s.RM, KeyVault: s.KeyVault, Batch: s.Batch, Data: data,
		Compute: s.Compute, DataDir: s.cfg.DataDir, AdminClientID: s.Admin.ClientID, Logger: s.log})
	if err != nil {
		return err
	}
	s.HTTP.HandlePortal(p)
	url := publicURL("portal", s.cfg.Domain, s.Endpoint.Port)
	link, err := portal.MintSignInLink(s.cfg.DataDir, url)
	if err != nil {
		return err
	}
	s.log.Info("portal: open the one-time link to sign in as the admin (valid 15 minutes; `custody portal` prints a new one)", "portal", url, "link", link)
	return nil
}
