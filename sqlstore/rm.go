package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"custody"
	"custody/rm"
)

// RMStore implements rm.Store.
type RMStore struct{ DB *DB }

var _ rm.Store = (*RMStore)(nil)

func (s *RMStore) Setting(ctx context.Context, key string) (string, error) {
	var v string
	err := s.DB.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", custody.Errorf(custody.KindNotFound, "SettingNotFound", "Setting %s is not set.", key)
	}
	return v, dbErr(err, "read setting")
}

func (s *RMStore) SetSettingIfAbsent(ctx context.Context, key, value string) (string, error) {
	if _, err := s.DB.db.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, value); err != nil {
		return "", dbErr(err, "write setting")
	}
	return s.Setting(ctx, key)
}

func (s *RMStore) PutResourceGroup(ctx context.Context, g *rm.ResourceGroup) (bool, error) {
	tags, _ := json.Marshal(nonNilTags(g.Tags))
	created := false
	err := s.DB.Tx(ctx, func(tx *sql.Tx) error {
		var existing string
		err := tx.QueryRowContext(ctx, `SELECT name FROM resource_groups WHERE subscription_id = $1 AND name_key = $2`, g.SubscriptionID, lower(g.Name)).Scan(&existing)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			created = true
			_, err = tx.ExecContext(ctx, `INSERT INTO resource_groups (subscription_id, name_key, name, location, tags, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
				g.SubscriptionID, lower(g.Name), g.Name, g.Location, string(tags), unix(g.CreatedAt))
			return dbErr(err, "insert resource group")
		case err != nil:
			return dbErr(err, "read resource group")
		}
		var loc string
		if err := tx.QueryRowContext(ctx, `SELECT location FROM resource_groups WHERE subscription_id = $1 AND name_key = $2`, g.SubscriptionID, lower(g.Name)).Scan(&loc); err != nil {
			return dbErr(err, "read resource group")
		}
		if !strings.EqualFold(strings.ReplaceAll(loc, " ", ""), strings.ReplaceAll(g.Location, " ", "")) {
			return custody.Errorf(custody.KindConflict, "InvalidResourceGroupLocation",
				"Invalid resource group location '%s'. The resource group '%s' already exists in location '%s'.", g.Location, existing, loc)
		}
		_, err = tx.ExecContext(ctx, `UPDATE resource_groups SET tags = $1 WHERE subscription_id = $2 AND name_key = $3`, string(tags), g.SubscriptionID, lower(g.Name))
		return dbErr(err, "update resource group")
	})
	return created, err
}

func scanGroup(row interface{ Scan(...any) error }) (*rm.ResourceGroup, error) {
	var g rm.ResourceGroup
	var tags string
	var created int64
	if err := row.Scan(&g.SubscriptionID, &g.Name, &g.Location, &tags, &created); err != nil {
		return nil, err
	}
	g.ID, g.CreatedAt = rm.GroupID(g.SubscriptionID, g.Name), fromUnix(created)
	return &g, json.Unmarshal([]byte(tags), &g.Tags)
}

func (s *RMStore) ResourceGroup(ctx context.Context, sub, name string) (*rm.ResourceGroup, error) {
	g, err := scanGroup(s.DB.db.QueryRowContext(ctx, `SELECT subscription_id, name, location, tags, created_at FROM resource_groups WHERE subscription_id = $1 AND name_key = $2`, sub, lower(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, custody.Errorf(custody.KindNotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found. Create it first (custody group create).", name)
	}
	return g, dbErr(err, "read resource group")
}

func (s *RMStore) ListResourceGroups(ctx context.Context, sub string) ([]*rm.ResourceGroup, error) {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT subscription_id, name, location, tags, created_at FROM resource_groups WHERE subscription_id = $1 ORDER BY name_key`, sub)
	if err != nil {
		return nil, dbErr(err, "list resource groups")
	}
	defer rows.Close()
	out := []*rm.ResourceGroup{}
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			return nil, dbErr(err, "scan resource group")
		}
		out = append(out, g)
	}
	return out, dbErr(rows.Err(), "list resource groups")
}

func (s *RMStore) DeleteResourceGroup(ctx context.Context, sub, name string) error {
	res, err := s.DB.db.ExecContext(ctx, `DELETE FROM resource_groups WHERE subscription_id = $1 AND name_key = $2`, sub, lower(name))
	if err != nil {
		return dbErr(err, "delete resource group")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindNotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", name)
	}
	return nil
}

const raCols = `id, name, scope, role_definition_id, principal_id, principal_type, created_by, created_at`

func scanRA(row interface{ Scan(...any) error }) (*rm.RoleAssignment, error) {
	var a rm.RoleAssignment
	var created int64
	if err := row.Scan(&a.ID, &a.Name, &a.Scope, &a.RoleDefinitionID, &a.PrincipalID, &a.PrincipalType, &a.CreatedBy, &created); err != nil {
		return nil, err
	}
	a.CreatedAt = fromUnix(created)
	return &a, nil
}

func (s *RMStore) PutRoleAssignment(ctx context.Context, a *rm.RoleAssignment) error {
	_, err := s.DB.db.ExecContext(ctx, `INSERT INTO role_assignments (id_key, `+raCols+`, scope_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id_key) DO UPDATE SET role_definition_id = excluded.role_definition_id, principal_id = excluded.principal_id, principal_type = excluded.principal_type`,
		lower(a.ID), a.ID, a.Name, a.Scope, a.RoleDefinitionID, a.PrincipalID, a.PrincipalType, a.CreatedBy, unix(a.CreatedAt), lower(a.Scope))
	return dbErr(err, "write role assignment")
}

func (s *RMStore) RoleAssignment(ctx context.Context, id string) (*rm.RoleAssignment, error) {
	a, err := scanRA(s.DB.db.QueryRowContext(ctx, `SELECT `+raCols+` FROM role_assignments WHERE id_key = $1`, lower(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, custody.Errorf(custody.KindNotFound, "RoleAssignmentNotFound", "The role assignment '%s' is not found.", lastSeg(id))
	}
	return a, dbErr(err, "read role assignment")
}

func (s *RMStore) listRA(ctx context.Context, where string, args ...any) ([]*rm.RoleAssignment, error) {
	rows, err := s.DB.db.QueryContext(ctx, `SELECT `+raCols+` FROM role_assignments WHERE `+where+` ORDER BY created_at, id_key`, args...)
	if err != nil {
		return nil, dbErr(err, "list role assignments")
	}
	defer rows.Close()
	out := []*rm.RoleAssignment{}
	for rows.Next() {
		a, err := scanRA(rows)
		if err != nil {
			return nil, dbErr(err, "scan role assignment")
		}
		out = append(out, a)
	}
	return out, dbErr(rows.Err(), "list role assignments")
}

func (s *RMStore) RoleAssignmentsForPrincipal(ctx context.Context, principalID string) ([]*rm.RoleAssignment, error) {
	return s.listRA(ctx, `principal_id = $1`, principalID)
}

func (s *RMStore) ListRoleAssignments(ctx context.Context, scope string) ([]*rm.RoleAssignment, error) {
	k := lower(strings.TrimRight(scope, "/"))
	return s.listRA(ctx, `scope_key = $1 OR substr(scope_key, 1, $2) = $3`, k, prefixLen(k), k+"/")
}

// prefixLen is the length of scope k plus its trailing slash in characters,
// as substr counts on both engines (not bytes: names may be non-ASCII).
func prefixLen(k string) int { return utf8.RuneCountInString(k) + 1 }

func (s *RMStore) DeleteRoleAssignment(ctx context.Context, id string) error {
	res, err := s.DB.db.ExecContext(ctx, `DELETE FROM role_assignments WHERE id_key = $1`, lower(id))
	if err != nil {
		return dbErr(err, "delete role assignment")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return custody.Errorf(custody.KindNotFound, "RoleAssignmentNotFound", "The role assignment '%s' is not found.", lastSeg(id))
	}
	return nil
}

func (s *RMStore) DeleteRoleAssignmentsUnder(ctx context.Context, scope string) error {
	k := lower(strings.TrimRight(scope, "/"))
	_, err := s.DB.db.ExecContext(ctx, `DELETE FROM role_assignments WHERE scope_key = $1 OR substr(scope_key, 1, $2) = $3`, k, prefixLen(k), k+"/")
	return dbErr(err, "delete role assignments")
}

func (s *RMStore) PutOperation(ctx context.Context, op *rm.Operation) error {
	_, err := s.DB.db.ExecContext(ctx, `INSERT INTO operations (id, resource_id, kind, status, error_code, error_msg, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, error_code = excluded.error_code, error_msg = excluded.error_msg, updated_at = excluded.updated_at`,
		op.ID, op.ResourceID, op.Kind, op.Status, op.ErrorCode, op.ErrorMsg, unix(op.CreatedAt), unix(op.UpdatedAt))
	return dbErr(err, "write operation")
}

func (s *RMStore) Operation(ctx context.Context, id string) (*rm.Operation, error) {
	var op rm.Operation
	var c, u int64
	err := s.DB.db.QueryRowContext(ctx, `SELECT id, resource_id, kind, status, error_code, error_msg, created_at, updated_at FROM operations WHERE id = $1`, id).
		Scan(&op.ID, &op.ResourceID, &op.Kind, &op.Status, &op.ErrorCode, &op.ErrorMsg, &c, &u)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, custody.Errorf(custody.KindNotFound, "OperationNotFound", "The operation '%s' was not found.", id)
	}
	op.CreatedAt, op.UpdatedAt = fromUnix(c), fromUnix(u)
	return &op, dbErr(err, "read operation")
}
