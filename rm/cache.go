package rm

import (
	"context"
	"sync"
)

// CacheRoleAssignments makes s keep each principal's role assignments in
// memory once read, so that an authorization check (a key vault data-plane
// call on an RBAC vault, an ARM request) reads no row. Every role assignment
// write through s.Store (create, delete, delete under a scope) empties the
// cache before and after the write, so a revoked assignment is refused on
// the very next check; nothing is kept for a time.
//
// Use it only when this process is the only writer of the database (the
// embedded SQLite store): writes made by another process (a second server
// replica on a shared PostgreSQL database) would not be seen. Call it during
// wiring, before the store is in use.
func (s *Service) CacheRoleAssignments() {
	s.Store = &cachedStore{Store: s.Store, byPrincipal: map[string][]RoleAssignment{}}
}

// maxCachedPrincipals bounds the cache; past it, it starts again empty.
const maxCachedPrincipals = 10000

type cachedStore struct {
	Store
	mu sync.Mutex
	// gen is bumped by every write; a read that began under another
	// generation is not kept, so a read racing a write leaves nothing old.
	gen         uint64
	byPrincipal map[string][]RoleAssignment
}

func (c *cachedStore) RoleAssignmentsForPrincipal(ctx context.Context, principalID string) ([]*RoleAssignment, error) {
	c.mu.Lock()
	as, ok := c.byPrincipal[principalID]
	gen := c.gen
	c.mu.Unlock()
	if ok {
		return copyAssignments(as), nil
	}
	got, err := c.Store.RoleAssignmentsForPrincipal(ctx, principalID)
	if err != nil {
		return nil, err
	}
	keep := make([]RoleAssignment, len(got))
	for i, a := range got {
		keep[i] = *a
	}
	c.mu.Lock()
	if c.gen == gen {
		if len(c.byPrincipal) >= maxCachedPrincipals {
			clear(c.byPrincipal)
		}
		c.byPrincipal[principalID] = keep
	}
	c.mu.Unlock()
	return got, nil
}

func copyAssignments(as []RoleAssignment) []*RoleAssignment {
	out := make([]*RoleAssignment, len(as))
	for i := range as {
		a := as[i]
		out[i] = &a
	}
	return out
}

func (c *cachedStore) invalidate() {
	c.mu.Lock()
	c.gen++
	clear(c.byPrincipal)
	c.mu.Unlock()
}

// Writes empty the cache before and after the write, so that no read racing
// with the write can leave an old answer behind.

func (c *cachedStore) PutRoleAssignment(ctx context.Context, a *RoleAssignment) error {
	defer c.invalidate()
	c.invalidate()
	return c.Store.PutRoleAssignment(ctx, a)
}

func (c *cachedStore) DeleteRoleAssignment(ctx context.Context, id string) error {
	defer c.invalidate()
	c.invalidate()
	return c.Store.DeleteRoleAssignment(ctx, id)
}

func (c *cachedStore) DeleteRoleAssignmentsUnder(ctx context.Context, scope string) error {
	defer c.invalidate()
	c.invalidate()
	return c.Store.DeleteRoleAssignmentsUnder(ctx, scope)
}
