package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"custody"
	"custody/identity"
	"custody/rm"
	"custody/sqlstore"
)

func TestResourceGroups(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.RMStore{DB: db}
		g := &rm.ResourceGroup{ID: rm.GroupID("sub1", "MyGroup"), SubscriptionID: "sub1", Name: "MyGroup", Location: "westus2", Tags: map[string]string{"a": "b"}, CreatedAt: t0}
		created, err := s.PutResourceGroup(ctx, g)
		if err != nil || !created {
			t.Fatalf("first put: created %v, err %v", created, err)
		}
		// Same name in other casing, same location spelt differently: an
		// update that keeps the original name and creation time.
		created, err = s.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: "sub1", Name: "MYGROUP", Location: "West US 2", Tags: map[string]string{"c": "d"}, CreatedAt: t0.Add(time.Hour)})
		if err != nil || created {
			t.Fatalf("second put: created %v, err %v; want an update", created, err)
		}
		got, err := s.ResourceGroup(ctx, "sub1", "mygroup")
		if err != nil {
			t.Fatal(err)
		}
		want := *g
		want.Tags = map[string]string{"c": "d"}
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("group mismatch (-want +got):\n%s", diff)
		}
		// Another location is a conflict and changes nothing.
		_, err = s.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: "sub1", Name: "mygroup", Location: "eastus", Tags: map[string]string{"e": "f"}, CreatedAt: t0})
		wantKind(t, err, custody.KindConflict)
		if got, _ := s.ResourceGroup(ctx, "sub1", "MyGroup"); got == nil || got.Location != "westus2" || got.Tags["c"] != "d" {
			t.Errorf("group after a conflicting put = %+v", got)
		}
		// Groups are per subscription.
		_, err = s.ResourceGroup(ctx, "sub2", "MyGroup")
		wantKind(t, err, custody.KindNotFound)
		for _, n := range []string{"b", "A", "c"} {
			if _, err := s.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: "sub1", Name: n, Location: "westus2", CreatedAt: t0}); err != nil {
				t.Fatal(err)
			}
		}
		list, err := s.ListResourceGroups(ctx, "sub1")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, g := range list {
			names = append(names, g.Name)
		}
		if diff := cmp.Diff([]string{"A", "b", "c", "MyGroup"}, names); diff != "" {
			t.Errorf("list order (-want +got):\n%s", diff)
		}
		if list, err := s.ListResourceGroups(ctx, "sub2"); err != nil || len(list) != 0 {
			t.Errorf("list of another subscription = %d, %v", len(list), err)
		}
		if err := s.DeleteResourceGroup(ctx, "sub1", "MYGROUP"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		_, err = s.ResourceGroup(ctx, "sub1", "MyGroup")
		wantKind(t, err, custody.KindNotFound)
		wantKind(t, s.DeleteResourceGroup(ctx, "sub1", "MyGroup"), custody.KindNotFound)
	})
}

func newAssignment(scope, principal string, at time.Time) *rm.RoleAssignment {
	name := identity.NewID()
	return &rm.RoleAssignment{
		ID: scope + "/providers/Microsoft.Authorization/roleAssignments/" + name, Name: name, Scope: scope,
		RoleDefinitionID: rm.RoleDefinitionID("sub1", rm.RoleReader), PrincipalID: principal, PrincipalType: "ServicePrincipal",
		CreatedAt: at, CreatedBy: "tester",
	}
}

func scopesOf(as []*rm.RoleAssignment) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.Scope)
	}
	sort.Strings(out)
	return out
}

func TestRoleAssignments(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.RMStore{DB: db}
		const sub = "/subscriptions/sub1"
		scopes := []string{
			sub,
			sub + "/resourceGroups/rg1",
			sub + "/resourceGroups/rg10",
			sub + "/resourceGroups/rg1-x",
			sub + "/resourceGroups/RG1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1",
			sub + "/resourceGroups/rg_1",
			sub + "/resourceGroups/rg%1",
			sub + "/resourceGroups/grüppe",
			sub + "/resourceGroups/grüppe/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ïd",
			"/subscriptions/sub10",
		}
		byScope := map[string]*rm.RoleAssignment{}
		for i, sc := range scopes {
			a := newAssignment(sc, "p"+strconv.Itoa(i%2), t0.Add(time.Duration(i)*time.Second))
			if err := s.PutRoleAssignment(ctx, a); err != nil {
				t.Fatalf("put at %s: %v", sc, err)
			}
			byScope[sc] = a
		}
		for _, tt := range []struct {
			scope string
			want  []string
		}{
			{sub + "/resourceGroups/rg1", []string{scopes[1], scopes[4]}},
			{sub + "/resourcegroups/RG1/", []string{scopes[1], scopes[4]}},
			{sub + "/resourceGroups/rg10", []string{scopes[2]}},
			{sub + "/resourceGroups/rg_1", []string{scopes[5]}},
			{sub + "/resourceGroups/rg%1", []string{scopes[6]}},
			{sub + "/resourceGroups/grüppe", []string{scopes[7], scopes[8]}},
			{sub + "/resourceGroups/GRÜPPE", []string{scopes[7], scopes[8]}},
			{scopes[4], []string{scopes[4]}},
			{sub + "/resourceGroups/rg", []string{}},
			{sub, scopes[:9]},
		} {
			got, err := s.ListRoleAssignments(ctx, tt.scope)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]string{}, tt.want...)
			sort.Strings(want)
			if diff := cmp.Diff(want, scopesOf(got)); diff != "" {
				t.Errorf("ListRoleAssignments(%s) (-want +got):\n%s", tt.scope, diff)
			}
		}

		a := byScope[scopes[4]]
		got, err := s.RoleAssignment(ctx, strings.ToLower(a.ID))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Errorf("RoleAssignment mismatch (-want +got):\n%s", diff)
		}
		mine, err := s.RoleAssignmentsForPrincipal(ctx, "p0")
		if err != nil {
			t.Fatal(err)
		}
		if len(mine) != 5 {
			t.Errorf("assignments of p0 = %d, want 5", len(mine))
		}
		for i := 1; i < len(mine); i++ {
			if mine[i].CreatedAt.Before(mine[i-1].CreatedAt) {
				t.Errorf("assignments of p0 are not in creation order")
			}
		}

		// Putting the same id again replaces the role, not the row.
		b := *a
		b.RoleDefinitionID = rm.RoleDefinitionID("sub1", rm.RoleOwner)
		if err := s.PutRoleAssignment(ctx, &b); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.RoleAssignment(ctx, a.ID); got == nil || got.RoleDefinitionID != b.RoleDefinitionID {
			t.Errorf("after re-put, role = %v, want %s", got, b.RoleDefinitionID)
		}
		if all, _ := s.ListRoleAssignments(ctx, "/"); len(all) != len(scopes) {
			t.Errorf("ListRoleAssignments(/) = %d, want %d", len(all), len(scopes))
		}

		if err := s.DeleteRoleAssignmentsUnder(ctx, sub+"/resourceGroups/RG1"); err != nil {
			t.Fatal(err)
		}
		left, err := s.ListRoleAssignments(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{scopes[0], scopes[2], scopes[3], scopes[5], scopes[6], scopes[7], scopes[8]}
		sort.Strings(want)
		if diff := cmp.Diff(want, scopesOf(left)); diff != "" {
			t.Errorf("left after deleting under rg1 (-want +got):\n%s", diff)
		}
		c := byScope[scopes[2]]
		if err := s.DeleteRoleAssignment(ctx, strings.ToUpper(c.ID)); err != nil {
			t.Fatalf("delete: %v", err)
		}
		_, err = s.RoleAssignment(ctx, c.ID)
		wantKind(t, err, custody.KindNotFound)
		wantKind(t, s.DeleteRoleAssignment(ctx, c.ID), custody.KindNotFound)
	})
}

func TestOperations(t *testing.T) {
	forEachEngine(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := &sqlstore.RMStore{DB: db}
		op := &rm.Operation{ID: identity.NewID(), ResourceID: rm.GroupID("sub1", "rg1"), Kind: "delete", Status: rm.OpInProgress, CreatedAt: t0, UpdatedAt: t0}
		if err := s.PutOperation(ctx, op); err != nil {
			t.Fatal(err)
		}
		got, err := s.Operation(ctx, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(op, got); diff != "" {
			t.Errorf("operation mismatch (-want +got):\n%s", diff)
		}
		done := *op
		done.Status, done.ErrorCode, done.ErrorMsg, done.UpdatedAt = rm.OpFailed, "Conflict", "it clashed", t0.Add(time.Minute)
		done.ResourceID, done.Kind, done.CreatedAt = "changed", "changed", t0.Add(time.Hour) // not updatable
		if err := s.PutOperation(ctx, &done); err != nil {
			t.Fatal(err)
		}
		got, err = s.Operation(ctx, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := *op
		want.Status, want.ErrorCode, want.ErrorMsg, want.UpdatedAt = done.Status, done.ErrorCode, done.ErrorMsg, done.UpdatedAt
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("finished operation mismatch (-want +got):\n%s", diff)
		}
		_, err = s.Operation(ctx, identity.NewID())
		wantKind(t, err, custody.KindNotFound)
	})
}

// TestSQLiteConcurrentTransactions runs read-modify-write transactions from
// 8 goroutines on one SQLite database: every increment must land and none
// may fail with SQLITE_BUSY.
func TestSQLiteConcurrentTransactions(t *testing.T) {
	db := MustOpenSQLite(t)
	ctx := context.Background()
	rms := &sqlstore.RMStore{DB: db}
	ids := &sqlstore.IdentityStore{DB: db}
	if _, err := rms.SetSettingIfAbsent(ctx, "counter", "0"); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*3)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				err := db.Tx(ctx, func(tx *sql.Tx) error {
					var v string
					if err := tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = $1`, "counter").Scan(&v); err != nil {
						return err
					}
					n, err := strconv.Atoi(v)
					if err != nil {
						return err
					}
					_, err = tx.ExecContext(ctx, `UPDATE settings SET value = $1 WHERE key = $2`, strconv.Itoa(n+1), "counter")
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d round %d: increment: %w", w, i, err)
				}
				// Store methods that run their own transactions, interleaved.
				id := fmt.Sprintf("/subscriptions/sub1/resourceGroups/rg%d/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id%d", w, i%5)
				u := &identity.UserAssignedIdentity{ID: id, SubscriptionID: "sub1", ResourceGroup: fmt.Sprintf("rg%d", w), Name: fmt.Sprintf("id%d", i%5), Location: "westus2", CreatedAt: t0}
				if _, _, err := ids.PutUserAssignedIdentity(ctx, u, newPrincipal(identity.KindUserAssigned, id)); err != nil {
					errs <- fmt.Errorf("worker %d round %d: put identity: %w", w, i, err)
				}
				if _, err := rms.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: "sub1", Name: fmt.Sprintf("rg%d", w), Location: "westus2", CreatedAt: t0}); err != nil {
					errs <- fmt.Errorf("worker %d round %d: put group: %w", w, i, err)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if strings.Contains(strings.ToLower(err.Error()), "busy") || strings.Contains(err.Error(), "locked") {
			t.Errorf("SQLITE_BUSY: %v", err)
		} else {
			t.Error(err)
		}
		var ce *custody.Error
		if errors.As(err, &ce) && ce.Err != nil {
			t.Logf("cause: %v", ce.Err)
		}
	}
	got, err := rms.Setting(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(workers * rounds); got != want {
		t.Errorf("counter = %s, want %s (lost updates)", got, want)
	}
	list, err := ids.ListUserAssignedIdentities(ctx, "sub1", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != workers*5 {
		t.Errorf("identities = %d, want %d", len(list), workers*5)
	}
}
