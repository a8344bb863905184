package httpapi

import (
	"context"
	"encoding/json"

	"custody"
	"custody/batch"
	"custody/compute"
)

// batchAutoPools creates the pools of auto-pool specifications
// (batch.AutoPools) through the compute service, from the same
// PoolSpecification JSON a pool add takes.
type batchAutoPools struct{ b *batchData }

// AutoPools returns the batch data plane's auto-pool service, or nil when
// the compute service does not run.
func (s *Server) AutoPools() batch.AutoPools {
	b, ok := s.batch.(*batchData)
	if !ok || b.compute == nil {
		return nil
	}
	return batchAutoPools{b}
}

func (ap batchAutoPools) pool(ctx context.Context, id string, raw json.RawMessage) (*compute.Pool, error) {
	var in poolIn
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "it is not a pool specification: %s.", jsonErrorText(err))
	}
	if in.ID != "" {
		return nil, custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "a pool specification has no id; the auto pool is named {autoPoolIdPrefix}_{id}.")
	}
	if in.Identity != nil && len(in.Identity.UserAssignedIdentities) > 0 {
		// A pool add checks that its caller may assign the identities; a
		// job schedule creates its pools long after its caller is gone.
		return nil, custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "auto pools cannot have user-assigned identities on this server; create a pool with the identity and name it in poolInfo.poolId.")
	}
	p, err := ap.b.newPool(ctx, id, &in)
	if err != nil {
		return nil, err
	}
	return p, p.Validate()
}

func (ap batchAutoPools) ValidateAutoPool(ctx context.Context, account string, raw json.RawMessage) error {
	_, err := ap.pool(ctx, "auto-pool", raw)
	return err
}

func (ap batchAutoPools) CreateAutoPool(ctx context.Context, account, id string, raw json.RawMessage) error {
	p, err := ap.pool(ctx, id, raw)
	if err != nil {
		return err
	}
	if _, err := ap.b.compute.CreatePool(ctx, account, p); err != nil {
		if ce, ok := err.(*custody.Error); ok && ce.Code == "PoolExists" {
			return nil
		}
		return err
	}
	return nil
}

func (ap batchAutoPools) DeleteAutoPool(ctx context.Context, account, id string) error {
	if err := ap.b.compute.DeletePool(ctx, account, id); err != nil && !custody.IsNotFound(err) {
		return err
	}
	return nil
}
