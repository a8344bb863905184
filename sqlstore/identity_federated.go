package sqlstore

import (
	"context"
	"encoding/json"

	"custody"
	"custody/identity"
)

const federatedCols = `id, app_id, name, issuer, subject, audiences, description, created_at`

// AddFederatedCredential stores c; a second credential of the same name on
// one application is KindConflict.
func (s *IdentityStore) AddFederatedCredential(ctx context.Context, c *identity.FederatedCredential) error {
	aud, err := json.Marshal(c.Audiences)
	if err != nil {
		return err
	}
	_, err = s.DB.db.ExecContext(ctx, `INSERT INTO federated_credentials (`+federatedCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		c.ID, c.AppID, c.Name, c.Issuer, c.Subject, string(aud), c.Description, unix(c.CreatedAt))
	if isUniqueViolation(err) {
		return custody.Errorf(custody.KindConflict, "FederatedIdentityCredentialExists",
			"The application %s already has a federated identity credential named %q. Choose another name, or delete that one first.", c.AppID, c.Name)
	}
	return dbErr(err, "insert federated credential")
}

// FederatedCredentials lists the federated identity credentials of appID,
// oldest first.
func (s *IdentityStore) FederatedCredentials(ctx context.Context, appID string) ([]*identity.FederatedCredential, error) {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT `+federatedCols+` FROM federated_credentials WHERE app_id = $1 ORDER BY created_at, id`, appID)
	if err != nil {
		return nil, dbErr(err, "list federated credentials")
	}
	defer rows.Close()
	out := []*identity.FederatedCredential{}
	for rows.Next() {
		var c identity.FederatedCredential
		var aud string
		var created int64
		if err := rows.Scan(&c.ID, &c.AppID, &c.Name, &c.Issuer, &c.Subject, &aud, &c.Description, &created); err != nil {
			return nil, dbErr(err, "scan federated credential")
		}
		if err := json.Unmarshal([]byte(aud), &c.Audiences); err != nil {
			return nil, dbErr(err, "decode federated credential audiences")
		}
		c.CreatedAt = fromUnix(created)
		out = append(out, &c)
	}
	return out, dbErr(rows.Err(), "list federated credentials")
}

// DeleteFederatedCredential deletes the credential id of appID
// (KindNotFound).
func (s *IdentityStore) DeleteFederatedCredential(ctx context.Context, appID, id string) error {
	res, err := s.DB.db.ExecContext(ctx, `DELETE FROM federated_credentials WHERE app_id = $1 AND id = $2`, appID, id)
	if err != nil {
		return dbErr(err, "delete federated credential")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindNotFound, "FederatedIdentityCredentialNotFound",
			"The application %s has no federated identity credential with id %s.", appID, id)
	}
	return nil
}
