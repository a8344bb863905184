package server

import "custody/portal"

// openPortal serves the web portal on portal.{domain}.
func (s *Server) openPortal() error {
	p, err := portal.New(portal.Config{Identity: s.Identity, RM: s.RM, KeyVault: s.KeyVault, Batch: s.Batch, Data: s.BatchData,
		Compute: s.Compute, DataDir: s.cfg.DataDir, AdminClientID: s.Admin.ClientID, Logger: s.log})
	if err != nil {
		return err
	}
	s.HTTP.HandlePortal(p)
	return nil
}

// PortalSignInLink mints a one-time sign-in link for the bootstrap admin.
// `custody server` prints one on the terminal at start (never to the log,
// since the link is a credential until used), and `custody portal` prints a
// fresh one.
func (s *Server) PortalSignInLink() (string, error) {
	return portal.MintSignInLink(s.cfg.DataDir, publicURL("portal", s.cfg.Domain, s.Endpoint.Port))
}
