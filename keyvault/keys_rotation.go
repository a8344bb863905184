package keyvault

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// KeyRotationPolicy is a key's rotation policy on the wire.
type KeyRotationPolicy struct {
	ID              string                       `json:"id,omitempty"`
	LifetimeActions []LifetimeActionJSON         `json:"lifetimeActions"`
	Attributes      *KeyRotationPolicyAttributes `json:"attributes,omitempty"`
}

// LifetimeActionJSON is one trigger and action of a rotation policy.
type LifetimeActionJSON struct {
	Trigger *LifetimeTrigger `json:"trigger,omitempty"`
	Action  *LifetimeAct     `json:"action,omitempty"`
}

// LifetimeTrigger says when an action runs: an ISO-8601 duration after the
// latest version's creation, or before its expiry.
type LifetimeTrigger struct {
	TimeAfterCreate  *string `json:"timeAfterCreate,omitempty"`
	TimeBeforeExpiry *string `json:"timeBeforeExpiry,omitempty"`
}

// LifetimeAct is the action of a lifetime action: Rotate or Notify.
type LifetimeAct struct {
	Type string `json:"type"`
}

// KeyRotationPolicyAttributes are a policy's attributes.
type KeyRotationPolicyAttributes struct {
	ExpiryTime *string `json:"expiryTime,omitempty"`
	Created    *int64  `json:"created,omitempty"`
	Updated    *int64  `json:"updated,omitempty"`
}

// isoDuration is an ISO-8601 duration (PnYnMnWnDTnHnMnS).
type isoDuration struct {
	years, months, days int
	clock               time.Duration
}

var isoRE = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

func parseDuration(s string) (isoDuration, error) {
	m := isoRE.FindStringSubmatch(strings.ToUpper(s))
	if m == nil || s == "P" || strings.HasSuffix(strings.ToUpper(s), "T") {
		return isoDuration{}, bad("%q is not an ISO-8601 duration; write it like P90D, P1Y or P2M.", s)
	}
	n := func(i int) int {
		if m[i] == "" {
			return 0
		}
		v, err := strconv.Atoi(m[i])
		if err != nil || v > 100000 {
			return -1
		}
		return v
	}
	d := isoDuration{years: n(1), months: n(2), days: n(3)*7 + n(4),
		clock: time.Duration(n(5))*time.Hour + time.Duration(n(6))*time.Minute + time.Duration(n(7))*time.Second}
	for i := 1; i <= 7; i++ {
		if n(i) < 0 {
			return isoDuration{}, bad("The duration %q is too long.", s)
		}
	}
	return d, nil
}

func (d isoDuration) addTo(t time.Time) time.Time {
	return t.AddDate(d.years, d.months, d.days).Add(d.clock)
}

func (d isoDuration) subFrom(t time.Time) time.Time {
	return t.AddDate(-d.years, -d.months, -d.days).Add(-d.clock)
}

// approx is the duration's length counted from a fixed instant.
func (d isoDuration) approx() time.Duration {
	t0 := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	return d.addTo(t0).Sub(t0)
}

const day = 24 * time.Hour

func (s *Service) policyJSON(v *Vault, k *Key) *KeyRotationPolicy {
	out := &KeyRotationPolicy{ID: s.keyURL(v.Name, k.Name) + "/rotationpolicy"}
	p := k.RotationPolicy
	if p == nil {
		// The policy every key has until one is set: notify 30 days before
		// expiry, no rotation.
		out.LifetimeActions = []LifetimeActionJSON{{Trigger: &LifetimeTrigger{TimeBeforeExpiry: ptr("P30D")}, Action: &LifetimeAct{Type: "Notify"}}}
		out.Attributes = &KeyRotationPolicyAttributes{}
		return out
	}
	out.LifetimeActions = []LifetimeActionJSON{}
	for _, a := range p.LifetimeActions {
		la := LifetimeActionJSON{Trigger: &LifetimeTrigger{}, Action: &LifetimeAct{Type: a.Action}}
		if a.TimeAfterCreate != "" {
			la.Trigger.TimeAfterCreate = ptr(a.TimeAfterCreate)
		}
		if a.TimeBeforeExpiry != "" {
			la.Trigger.TimeBeforeExpiry = ptr(a.TimeBeforeExpiry)
		}
		out.LifetimeActions = append(out.LifetimeActions, la)
	}
	out.Attributes = &KeyRotationPolicyAttributes{Created: unixOf(p.CreatedAt), Updated: unixOf(p.UpdatedAt)}
	if p.ExpiryTime != "" {
		out.Attributes.ExpiryTime = ptr(p.ExpiryTime)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// GetRotationPolicy returns a key's rotation policy, or the default policy if
// none was set.
func (s *Service) GetRotationPolicy(ctx context.Context, vault, name string) (_ *KeyRotationPolicy, err error) {
	c := s.begin(ctx, opGetPolicy, vault, name, "")
	defer c.end(&err)
	v, k, err := s.resolveKey(ctx, vault, name, opGetPolicy)
	if err != nil {
		return nil, err
	}
	return s.policyJSON(v, k), nil
}

// UpdateRotationPolicy replaces a key's rotation policy. As Azure does, a
// policy without a Notify action gets the default one (30 days before
// expiry).
func (s *Service) UpdateRotationPolicy(ctx context.Context, vault, name string, body Decoder) (_ *KeyRotationPolicy, err error) {
	c := s.begin(ctx, opSetPolicy, vault, name, "")
	defer c.end(&err)
	v, k, err := s.resolveKey(ctx, vault, name, opSetPolicy)
	if err != nil {
		return nil, err
	}
	var in KeyRotationPolicy
	if err := body(&in); err != nil {
		return nil, err
	}
	p, err := validatePolicy(&in)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Second)
	p.CreatedAt, p.UpdatedAt = now, now
	if k.RotationPolicy != nil {
		p.CreatedAt = k.RotationPolicy.CreatedAt
	}
	k.RotationPolicy = p
	k.UpdatedAt = now
	if err := s.Keys.UpdateKey(ctx, k); err != nil {
		return nil, err
	}
	return s.policyJSON(v, k), nil
}

func validatePolicy(in *KeyRotationPolicy) (*RotationPolicy, error) {
	p := &RotationPolicy{}
	var expiry time.Duration
	if in.Attributes != nil && in.Attributes.ExpiryTime != nil && *in.Attributes.ExpiryTime != "" {
		d, err := parseDuration(*in.Attributes.ExpiryTime)
		if err != nil {
			return nil, err
		}
		expiry = d.approx()
		if expiry < 28*day {
			return nil, bad("The policy's expiryTime %s is too short; it must be at least 28 days (P28D).", *in.Attributes.ExpiryTime)
		}
		p.ExpiryTime = strings.ToUpper(*in.Attributes.ExpiryTime)
	}
	if len(in.LifetimeActions) > 2 {
		return nil, bad("A rotation policy has at most two lifetime actions (one Rotate, one Notify); this one has %d.", len(in.LifetimeActions))
	}
	seen := map[string]bool{}
	for i, la := range in.LifetimeActions {
		if la.Action == nil || la.Trigger == nil {
			return nil, bad("Lifetime action %d needs both a trigger and an action.", i)
		}
		typ := ""
		switch {
		case strings.EqualFold(la.Action.Type, "Rotate"):
			typ = "Rotate"
		case strings.EqualFold(la.Action.Type, "Notify"):
			typ = "Notify"
		default:
			return nil, bad("Lifetime action %d has type %q; use Rotate or Notify.", i, la.Action.Type)
		}
		if seen[typ] {
			return nil, bad("The policy has more than one %s action; give at most one of each.", typ)
		}
		seen[typ] = true
		tac, tbe := la.Trigger.TimeAfterCreate, la.Trigger.TimeBeforeExpiry
		if (tac == nil || *tac == "") == (tbe == nil || *tbe == "") {
			return nil, bad("The trigger of the %s action must set exactly one of timeAfterCreate and timeBeforeExpiry.", typ)
		}
		a := LifetimeAction{Action: typ}
		if tac != nil && *tac != "" {
			d, err := parseDuration(*tac)
			if err != nil {
				return nil, err
			}
			if d.approx() < 7*day {
				return nil, bad("The %s action's timeAfterCreate %s is too short; it must be at least 7 days (P7D).", typ, *tac)
			}
			if expiry > 0 && d.approx() >= expiry {
				return nil, bad("The %s action's timeAfterCreate %s must be shorter than the policy's expiryTime %s.", typ, *tac, p.ExpiryTime)
			}
			a.TimeAfterCreate = strings.ToUpper(*tac)
		} else {
			d, err := parseDuration(*tbe)
			if err != nil {
				return nil, err
			}
			if d.approx() < 7*day {
				return nil, bad("The %s action's timeBeforeExpiry %s is too short; it must be at least 7 days (P7D).", typ, *tbe)
			}
			if typ == "Rotate" && expiry == 0 {
				return nil, bad("Rotating %s before expiry needs an expiry: set attributes.expiryTime in the policy.", *tbe)
			}
			if expiry > 0 && d.approx() >= expiry {
				return nil, bad("The %s action's timeBeforeExpiry %s must be shorter than the policy's expiryTime %s.", typ, *tbe, p.ExpiryTime)
			}
			a.TimeBeforeExpiry = strings.ToUpper(*tbe)
		}
		p.LifetimeActions = append(p.LifetimeActions, a)
	}
	if !seen["Notify"] {
		p.LifetimeActions = append(p.LifetimeActions, LifetimeAction{TimeBeforeExpiry: "P30D", Action: "Notify"})
	}
	return p, nil
}
